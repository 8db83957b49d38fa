"""The state store of a ModelCanary: its status, written with conflict detection.

`status.state` holds the rollout state; `status.phase`, `step`, `weight`, `message` and
`conditions` are for printer columns and people. Each write carries the resourceVersion
read at the start of the tick, so a write over someone else's newer change fails (409)
instead of losing it. Operator intents live in the annotation `modelcanary.io/intent`
(outside the fields GitOps tools own) and are removed once handled.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from modelcanary.adapters.kube_client import Resource
from modelcanary.errors import ModelcanaryError
from modelcanary.rollout.intents import FINISHED, Intent
from modelcanary.rollout.state import RolloutState

INTENT_ANNOTATION = "modelcanary.io/intent"


def status_fields(state: RolloutState) -> dict[str, Any]:
    """The status block for a state (pure)."""
    message = state.analysis.reason if state.analysis else ""
    if state.history and (not message or state.phase in FINISHED):
        message = state.history[-1].reason  # why it finished, not "rollout is Promoted"
    ready = state.phase in ("Progressing", "Promoted")
    return {
        "phase": state.phase,
        "step": state.step + 1,
        "weight": state.weight,
        "message": message,
        "state": state.to_json(),
        "conditions": [
            progressing_condition(
                ready, state.phase, message[:1000], state.history[-1].at if state.history else None
            )
        ],
    }


def progressing_condition(
    ready: bool, reason: str, message: str, at: float | None = None
) -> dict[str, str]:
    """The `Progressing` condition (at: when it last changed; None: now)."""
    moment = datetime.fromtimestamp(at, UTC) if at else datetime.now(UTC)
    return {
        "type": "Progressing",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class StatusStore:
    """State in the resource's status; intent in an annotation."""

    def __init__(
        self,
        resource: Resource,
        listed: dict[str, Any] | None = None,
        parsed: dict[str, tuple[str, RolloutState]] | None = None,
    ) -> None:
        """`listed`: the resource as a list or watch just returned it (saves the first
        read); `parsed`: states already read, by name, with their resourceVersion (a state
        is parsed once per version; the store keeps it current)."""
        self.resource = resource
        self.body: dict[str, Any] = {}
        self.listed = listed
        self.parsed = parsed
        self.written: list[str] = []  # the resourceVersions this store's writes made

    def _version(self) -> dict[str, Any]:
        version = self.body.get("metadata", {}).get("resourceVersion")
        return {"resourceVersion": version} if version else {}

    def load(self) -> RolloutState | None:
        self.body, self.listed = self.listed or self.resource.get(), None
        state = self.body.get("status", {}).get("state")
        if not state:
            return None
        version = self._version().get("resourceVersion", "")
        known = self.parsed.get(self.resource.name) if self.parsed is not None else None
        if known is not None and version and known[0] == version:
            return known[1]
        try:
            found = RolloutState.from_json(state)
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelcanaryError(
                f"{self.resource.where}: unreadable status.state: {exc}"
            ) from None
        self._remember(found)
        return found

    def save(self, state: RolloutState) -> None:
        body = {"metadata": self._version(), "status": status_fields(state)}
        self.body = self.resource.patch(body, status=True)
        self.written.append(self._version().get("resourceVersion", ""))
        self._remember(state)

    def _remember(self, state: RolloutState) -> None:
        version = self._version().get("resourceVersion")
        if self.parsed is not None and version:
            self.parsed[self.resource.name] = (version, state)

    def read_intent(self) -> Intent | None:
        text = self.body.get("metadata", {}).get("annotations", {}).get(INTENT_ANNOTATION)
        if not text:
            return None
        try:
            return Intent(**json.loads(text))
        except (TypeError, ValueError):
            return None  # not ours to act on; the plugin validates what it writes

    def clear_intent(self, intent: Intent) -> None:
        current = self.resource.get()
        text = current.get("metadata", {}).get("annotations", {}).get(INTENT_ANNOTATION)
        try:
            same = bool(text) and json.loads(text).get("id") == intent.id
        except ValueError:
            same = True
        if same:
            version = current.get("metadata", {}).get("resourceVersion")
            metadata: dict[str, Any] = {"annotations": {INTENT_ANNOTATION: None}}
            if version:
                metadata["resourceVersion"] = version
            self.body = self.resource.patch({"metadata": metadata})
            self.written.append(self._version().get("resourceVersion", ""))


def mark_invalid(resource: Resource, message: str, body: dict[str, Any]) -> None:
    """Phase Invalid and a condition naming the field (written only when it changes)."""
    status = body.get("status") or {}
    if status.get("phase") == "Invalid" and status.get("message") == message:
        return
    condition = progressing_condition(False, "InvalidSpec", message)
    resource.patch(
        {"status": {"phase": "Invalid", "message": message, "conditions": [condition]}},
        status=True,
    )
