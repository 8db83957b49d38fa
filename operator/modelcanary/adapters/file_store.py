"""The local state store: a rollout's state and its pending operator intent as files.

`state.json` is replaced atomically (write, fsync, rename), so a controller killed at any
moment leaves either the old state or the new one, never half of one. `intent.json` is
written by the local commands (`modelcanary promote`, ...), read by the controller, and
removed only after the state that records it as handled is saved.

A state that cannot be written (a read-only or full disk, an immutable file) raises
`StateNotSaved` naming the file and the system's reason, and is kept in memory: `load`
returns it and every later `save` tries the disk again. A write-ahead record
(`applied=False`) is not kept: the move it announces is made only once it is written.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, replace
from pathlib import Path

from modelcanary.errors import UsageError, one_line
from modelcanary.files import write_atomically
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.ports import StateNotSaved
from modelcanary.rollout.state import RolloutState, StateError, parse_state

REPAIR = "`modelcanary rollout repair` rolls it back keeping its history"


class FileStateStore:
    """State and intent of one rollout in a directory; `steps`, the spec's number of
    steps, bounds the state's step when given."""

    def __init__(self, directory: Path, steps: int | None = None) -> None:
        self.directory = directory
        self.steps = steps
        self.state_path = directory / "state.json"
        self.intent_path = directory / "intent.json"
        self.unsaved: RolloutState | None = None  # saved in memory only: the disk failed

    def load(self) -> RolloutState | None:
        if self.unsaved is not None:
            return self.unsaved
        text = self.read_state_text()
        if text is None:
            return None
        try:
            return parse_state(json.loads(text), self.steps)
        except StateError as exc:
            raise UsageError(f"{self.state_path}: {exc}; {REPAIR}") from None
        except ValueError as exc:
            raise UsageError(
                f"{self.state_path}: not a readable rollout state: {one_line(exc)}; {REPAIR}"
            ) from None

    def read_state_text(self) -> str | None:
        """state.json as it is on disk; None when there is none."""
        try:
            return self.state_path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"{self.state_path}: not readable: {_reason(exc, self.directory)}"
            ) from None

    def save(self, state: RolloutState) -> None:
        try:
            write_atomically(self.state_path, state.dumps())
        except OSError as exc:
            if state.applied:
                self.unsaved = state
            raise StateNotSaved(
                f"cannot write {self.state_path}: {_reason(exc, self.directory)}"
            ) from None
        self.unsaved = None

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
        except OSError as exc:
            reason = _reason(exc, self.directory)
            raise UsageError(f"{self.intent_path}: not readable: {reason}") from None
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
            try:
                self.intent_path.unlink(missing_ok=True)
            except OSError:
                return  # a read-only disk: the state records the intent as handled


def _reason(exc: OSError | UnicodeDecodeError, directory: Path) -> str:
    """The system's reason, and the path it names when that is not a file of the directory
    (the directory itself, when its parent is a file)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    named = exc.filename and Path(exc.filename).parent != directory
    return f"{exc.strerror or one_line(exc)}" + (f" ({exc.filename})" if named else "")
