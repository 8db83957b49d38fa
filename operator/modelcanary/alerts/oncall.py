"""A local stand-in for the on-call person's pager: Alertmanager webhooks in, a readable
line out (stdout) each time an alert starts firing or resolves, and every notified alert
appended to a JSON-lines file. Control characters in a payload are printed escaped (a
label cannot drive the terminal or forge a line), and bodies are bounded as the
controller's webhook bounds them."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelcanary.alerts.webhook import BodyTooLarge, bounded_body


def printable(text: object) -> str:
    """The text with each control character escaped (`\\x1b`, `\\n`)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text)
    )


def describe(channel: str, alert: dict[str, Any]) -> str:
    """One notification as one readable line."""
    labels = alert.get("labels", {})
    annotations = alert.get("annotations", {})
    status = str(alert.get("status", "?")).upper()
    where = f"{labels.get('model', '?')}:{labels.get('version', '?')}"
    source = f" ({labels['source']})" if "source" in labels else ""
    text = annotations.get("description") or annotations.get("summary") or ""
    return printable(
        f"[{channel}] {status} {labels.get('severity', '-')} {labels.get('alertname', '?')} "
        f"{where}{source}: {text}"
    )


def create_app(log_path: Path, out: TextIO = sys.stdout) -> FastAPI:
    """Receives at `/{channel}` (the config uses /oncall and /chat)."""
    app = FastAPI(title="modelcanary local on-call receiver", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seen: dict[tuple[str, str], str] = {}  # (channel, fingerprint) -> last status printed

    @app.post("/{channel}")
    async def receive(channel: str, request: Request) -> JSONResponse:
        try:
            payload = json.loads(await bounded_body(request))
            alerts = list(payload["alerts"])
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, 413)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"not an Alertmanager webhook payload: {exc}"}, 400)
        with lock, log_path.open("a") as log:
            for alert in alerts:
                record = {"channel": channel, "received_at": time.time(), **alert}
                log.write(json.dumps(record) + "\n")
                # Alertmanager repeats a group's alerts in later notifications: print changes
                key = (channel, str(alert.get("fingerprint", id(alert))))
                if seen.get(key) != alert.get("status"):
                    seen[key] = str(alert.get("status"))
                    out.write(describe(channel, alert) + "\n")
                    out.flush()
        return JSONResponse({"received": len(alerts)})

    return app
