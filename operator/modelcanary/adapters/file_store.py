"""The local state store: a rollout's state and its pending operator intent as files.

`state.json` is replaced atomically (write, fsync, rename), so a controller killed at any
moment leaves either the old state or the new one, never half of one. `intent.json` is
written by the local commands (`modelcanary promote`, ...), read by the controller, and
removed only after the state that records it as handled is saved.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, replace
from pathlib import Path

from modelcanary.errors import UsageError, one_line
from modelcanary.files import write_atomically
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.state import RolloutState


class FileStateStore:
    """State and intent of one rollout in a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_path = directory / "state.json"
        self.intent_path = directory / "intent.json"

    def load(self) -> RolloutState | None:
        if not self.state_path.exists():
            return None
        try:
            return RolloutState.from_json(json.loads(self.state_path.read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(
                f"{self.state_path}: not a readable rollout state: {one_line(exc)}"
            ) from None

    def save(self, state: RolloutState) -> None:
        write_atomically(self.state_path, state.dumps())

    def record_intent(self, intent: Intent) -> Intent:
        """Record an intent with a fresh id (replacing one not yet acted on)."""
        recorded = replace(intent, id=intent.id or uuid.uuid4().hex)
        write_atomically(self.intent_path, json.dumps(asdict(recorded)) + "\n")
        return recorded

    def read_intent(self) -> Intent | None:
        """The pending intent, if any; it stays until `clear_intent`."""
        try:
            data = json.loads(self.intent_path.read_text())
            return Intent(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            self.intent_path.unlink(missing_ok=True)
            raise UsageError(
                f"{self.intent_path}: not a readable intent (removed): {one_line(exc)}"
            ) from None

    def clear_intent(self, intent: Intent) -> None:
        """Remove the intent once acted on, unless a newer one replaced it meanwhile."""
        try:
            current = self.read_intent()
        except UsageError:
            return
        if current is not None and current.id == intent.id:
            self.intent_path.unlink(missing_ok=True)
