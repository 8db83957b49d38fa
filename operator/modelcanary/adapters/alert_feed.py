"""Pushed alerts for a controller that runs apart from the webhook receiver.

Follows the receiver's alert book with a long poll and wakes the controller as soon as
the book changes, so a critical alert acts without waiting for the next tick. When the
receiver cannot be reached the feed keeps its last view and says so; Prometheus' `ALERTS`
still reaches the engine on every tick. An alert past its `endsAt` is no longer firing.
A pushed alert wakes the controller; the engine counts it only while Prometheus has it
too (anyone who reaches Alertmanager can post one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError

from modelcanary.alerts.alertmanager import ALERTS_PATH, CONTROLLER_ORIGIN
from modelcanary.alerts.webhook import WebhookAlert
from modelcanary.errors import one_line
from modelcanary.rollout.ports import FiringAlert

POLL_S = 25.0


class AlertFeed:
    """The receiver's firing alerts, kept current in a background thread."""

    def __init__(
        self, receiver: str, token: str, wake: threading.Event, client: httpx.Client | None = None
    ) -> None:
        self.endpoint = receiver.rstrip("/") + ALERTS_PATH
        self.headers = {"Authorization": f"Bearer {token}"}
        self.wake = wake
        self.client = client or httpx.Client(timeout=POLL_S + 10)
        self.problem: str | None = None
        self._alerts: list[WebhookAlert] = []  # every alert in the book
        self._version = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="alert-feed", daemon=True)

    def start(self) -> AlertFeed:
        self.refresh(0.0)  # the current book before the first tick
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def firing(self, model: str) -> tuple[FiringAlert, ...]:
        now = datetime.now(UTC)
        return pushed_alerts((a for a in self._alerts if not a.ended(now)), model)

    def _follow(self) -> None:
        while not self._stop.is_set():
            if not self.refresh(POLL_S):
                self._stop.wait(1.0)

    def refresh(self, wait: float) -> bool:
        """Read the book once it changes (or after `wait` seconds); False when unreachable."""
        try:
            response = self.client.get(
                self.endpoint, params={"after": self._version, "wait": wait}, headers=self.headers
            )
            response.raise_for_status()
            body = response.json()
            alerts = [WebhookAlert.model_validate(alert) for alert in body["alerts"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, ValidationError) as exc:
            self.problem = f"alert feed {self.endpoint}: {one_line(exc)}"
            return False
        self.problem = None
        if body["version"] != self._version:
            self._version = body["version"]
            self._alerts = alerts
            self.wake.set()
        return True


def pushed_alerts(alerts: Iterable[WebhookAlert], model: str) -> tuple[FiringAlert, ...]:
    """The model's alerts among Alertmanager's, without the controller's own notices."""
    return tuple(
        FiringAlert.from_labels(alert.labels, alert.startsAt.timestamp())
        for alert in alerts
        if alert.labels.get("model") == model and alert.labels.get("origin") != CONTROLLER_ORIGIN
    )
