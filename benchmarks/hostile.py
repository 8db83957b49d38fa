"""A hostile client for the soak: every probe of issue 25, sent again and again without the
stack's key, mixed into the users' load.

Each round sends, in turn: a body of 400,000 `[` and a JSON input with a shape of 2^40 rows
to the gateway's public path; requests pinned to the canary with a binary tensor header
that declares 2^40 rows over 256 bytes; a model load through Triton's repository API
(directly and through the gateway); a forged alert to Alertmanager, to the controller's
webhook and to the on-call receiver; and a batch of half-open connections (slowloris) to
the gateway and the webhook that send part of their headers and then nothing. Answers are
counted by probe and status; what the stack did about them (Triton restarts, rollbacks)
is for the soak to report.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from modelcanary import metrics_contract

BIG = 2**40


@dataclass
class HostileReport:
    """Answers per probe and status (`error` when the connection failed)."""

    answers: Counter[str] = field(default_factory=Counter)
    rounds: int = 0
    half_open: int = 0

    def to_json(self) -> dict[str, object]:
        return {"rounds": self.rounds, "half_open": self.half_open, "answers": dict(self.answers)}


class HostileClient:
    """Sends one round of probes every `every` seconds in a background thread; `canary`
    names the version under rollout at the time (pinned requests and forged alerts aim at
    it)."""

    def __init__(
        self,
        urls: dict[str, str],
        model: str,
        canary: Callable[[], str],
        every: float = 5.0,
        half_open: int = 200,
    ) -> None:
        self.urls, self.model, self.canary = urls, model, canary
        self.every, self.half_open = every, half_open
        self.report = HostileReport()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="hostile", daemon=True)
        self.sockets: list[socket.socket] = []

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> HostileReport:
        self.stopping.set()
        self.thread.join(60)
        self._close_half_open()
        return self.report

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                self._round(client)
                self.report.rounds += 1
                self.stopping.wait(self.every)

    def _round(self, client: httpx.Client) -> None:
        gateway = self.urls["gateway"]
        infer = f"{gateway}/v2/models/{self.model}/infer"
        canary = self.canary()
        pinned = {metrics_contract.VERSION_HEADER: canary}
        self._send(client, "nested_brackets", "POST", infer, content=b"[" * 400_000)
        self._send(client, "huge_json_shape", "POST", infer, json=_json_request([BIG, 64]))
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "pixels",
                        "shape": [BIG, 64],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 256},
                    }
                ]
            }
        ).encode()
        binary = {**pinned, "inference-header-content-length": str(len(header))}
        for _ in range(3):
            self._send(
                client,
                "pinned_binary_shape",
                "POST",
                infer,
                content=header + bytes(256),
                headers=binary,
            )
        load = {"parameters": {"config": json.dumps({"backend": "python"})}}
        self._send(
            client,
            "gateway_repository_load",
            "POST",
            f"{gateway}/v2/repository/models/pwnprobe/load",
            json=load,
        )
        triton = self.urls.get("triton_http")
        if triton:
            self._send(
                client,
                "triton_repository_load",
                "POST",
                f"{triton}/v2/repository/models/{self.model}/load",
                json=load,
            )
        alerts = _forged_alerts(self.model, canary)
        alertmanager = self.urls.get("alertmanager")
        if alertmanager:
            self._send(
                client,
                "forged_alert_alertmanager",
                "POST",
                f"{alertmanager}/api/v2/alerts",
                json=alerts,
            )
        for probe, key in (
            ("forged_alert_webhook", "controller_webhook"),
            ("forged_page", "oncall"),
        ):
            url = self.urls.get(key)
            if url:
                target = url if key == "controller_webhook" else f"{url}/oncall"
                self._send(client, probe, "POST", target, json=_notification(alerts))
        self._open_half(gateway, self.urls.get("controller_webhook"))

    def _send(
        self, client: httpx.Client, probe: str, method: str, url: str, **kwargs: object
    ) -> None:
        try:
            status = str(client.request(method, url, **kwargs).status_code)  # type: ignore[arg-type]
        except httpx.HTTPError:
            status = "error"
        self.report.answers[f"{probe} {status}"] += 1

    def _open_half(self, *urls: str | None) -> None:
        """Replace last round's half-open connections with new ones: a request line and one
        header, never the blank line that ends the headers."""
        self._close_half_open()
        targets = [u for u in urls if u]
        for index in range(self.half_open):
            parts = urlsplit(targets[index % len(targets)])
            try:
                sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=2)
                sock.sendall(f"POST {parts.path or '/'} HTTP/1.1\r\nHost: x\r\n".encode())
            except OSError:
                self.report.answers["half_open error"] += 1
                continue
            self.sockets.append(sock)
            self.report.half_open += 1

    def _close_half_open(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def _json_request(shape: list[int]) -> dict[str, object]:
    return {"inputs": [{"name": "pixels", "shape": shape, "datatype": "FP32", "data": [0.0] * 64}]}


def _forged_alerts(model: str, version: str) -> list[dict[str, object]]:
    """A rollback-severity alert against the canary, and one dated an hour ahead."""
    now = datetime.now(UTC)
    labels = {
        "alertname": "ModelVersionHighErrorRatio",
        "model": model,
        "version": version,
        "severity": "critical",
    }
    return [
        {"labels": labels, "startsAt": now.isoformat()},
        {"labels": labels, "startsAt": (now + timedelta(hours=1)).isoformat()},
    ]


def _notification(alerts: list[dict[str, object]]) -> dict[str, object]:
    """Alertmanager's webhook payload around the forged alerts."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "forged",
        "groupKey": "{}:{}",
        "alerts": [{**a, "status": "firing", "endsAt": "0001-01-01T00:00:00Z"} for a in alerts],
        "commonLabels": {},
        "externalURL": "http://forged",
        "time": time.time(),
    }
