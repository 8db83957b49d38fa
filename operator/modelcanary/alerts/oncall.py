"""A local stand-in for the on-call person's pager: Alertmanager webhooks in, a readable
line out (stdout) each time an alert starts firing or resolves, and every notified alert
appended to a JSON-lines file. Only Alertmanager pages: a post without the stack's bearer
token gets 401, one that is not an Alertmanager notification gets 400 and one line
naming what is wrong. Control characters in a payload are printed escaped (a label
cannot drive the terminal or forge a line), and bodies are bounded as the controller's
webhook bounds them."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelcanary.alerts.webhook import BodyRefused, WebhookPayload, bearer_check, bounded_body
from modelcanary.asgi_server import starlette_app
from modelcanary.errors import describe_validation_errors


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


def create_app(log_path: Path, token: str, out: TextIO = sys.stdout) -> Starlette:
    """Receives at `/{channel}` (the config uses /oncall and /chat)."""
    if not token:
        raise ValueError("the on-call receiver needs a bearer token")
    refused = bearer_check(token)
    lock = threading.Lock()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seen: dict[tuple[str, str], str] = {}  # (channel, fingerprint) -> last status printed

    async def receive(request: Request) -> JSONResponse:
        channel = request.path_params["channel"]
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            body = await bounded_body(request)
            WebhookPayload.model_validate_json(body)
        except BodyRefused as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except ValidationError as exc:
            problems = describe_validation_errors(exc, empty="body", limit=5)
            return JSONResponse({"error": f"not an Alertmanager webhook payload: {problems}"}, 400)
        alerts = json.loads(body)["alerts"]  # as sent, every field kept in the log
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

    return starlette_app([Route("/{channel}", receive, methods=["POST"])])
