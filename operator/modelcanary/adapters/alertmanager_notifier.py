"""The controller tells on-call what it did, through Alertmanager's v2 API.

Each rollout event becomes a short-lived alert (`origin="modelcanary-controller"`) that
Alertmanager routes like any other: a rollback is critical and pages, a promotion or a
pause is info or warning and goes to chat. The numbers behind a decision ride along as
annotations. Each event has an `event_id` label of its own (its time), so a second rollback
of the same version is a new alert and pages again; Alertmanager would otherwise take it
for the first, still active, and stay silent.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import httpx

from modelcanary.alerts.alertmanager import CONTROLLER_ORIGIN
from modelcanary.errors import ModelcanaryError, one_line
from modelcanary.rollout.ports import RolloutEvent

SEVERITY: dict[str, str] = {"promoted": "info", "rolled_back": "critical", "paused": "warning"}
ALERTNAME: dict[str, str] = {
    "promoted": "ModelCanaryPromoted",
    "rolled_back": "ModelCanaryRolledBack",
    "paused": "ModelCanaryPaused",
}


class NotifyError(ModelcanaryError):
    """Alertmanager could not be told."""


def alert_for(event: RolloutEvent, lifetime: timedelta = timedelta(minutes=5)) -> dict[str, Any]:
    """The Alertmanager v2 alert for an event (pure)."""
    numbers = ", ".join(f"{k}={v}" for k, v in sorted(event.numbers.items()))
    verb = {"promoted": "promoted", "rolled_back": "rolled back", "paused": "paused"}[event.kind]
    return {
        "labels": {
            "alertname": ALERTNAME[event.kind],
            "severity": SEVERITY[event.kind],
            "origin": CONTROLLER_ORIGIN,
            "rollout": event.rollout,
            "model": event.model,
            "version": event.canary,
            "event_id": event.at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ"),
        },
        "annotations": {
            "summary": f"{event.model}: canary version {event.canary} {verb}",
            "description": f"Rollout {event.rollout} {verb} canary version {event.canary} "
            f"(stable was {event.stable}): {event.reason}" + (f" [{numbers}]" if numbers else ""),
            "reason": event.reason,
            **{f"number_{k}": str(v) for k, v in event.numbers.items()},
        },
        "startsAt": event.at.isoformat(),
        "endsAt": (event.at + lifetime).isoformat(),
    }


class AlertmanagerNotifier:
    """Posts rollout events to one Alertmanager."""

    def __init__(
        self,
        url: str,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        auth: httpx.Auth | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout, auth=auth)

    def notify(self, event: RolloutEvent) -> None:
        endpoint = f"{self.url}/api/v2/alerts"
        try:
            response = self.client.post(endpoint, json=[alert_for(event)])
        except httpx.HTTPError as exc:
            raise NotifyError(
                f"Alertmanager at {endpoint} is unreachable: {one_line(exc)}"
            ) from None
        if response.status_code != 200:
            raise NotifyError(
                f"Alertmanager at {endpoint} refused the event: "
                f"{response.status_code} {response.text.strip()[:200]}"
            )
