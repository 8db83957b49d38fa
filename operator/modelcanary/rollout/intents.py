"""Operator intents and the one table of which intent is allowed in which phase.

Read by the stepper (an intent outside its phases is ignored, saying why), by the views,
by the local commands and by `kubectl canary` (which refuse it before recording it), so
the four cannot disagree. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["Pending", "Shadowing", "Progressing", "Paused", "Promoted", "RolledBack"]
IntentAction = Literal["promote", "promote_full", "rollback", "pause", "resume", "retry"]
FINISHED: tuple[Phase, ...] = ("Promoted", "RolledBack")
UNFINISHED: tuple[Phase, ...] = ("Pending", "Shadowing", "Progressing", "Paused")


@dataclass(frozen=True)
class Intent:
    """What a person asked for, and who and why."""

    action: IntentAction
    reason: str = ""
    by: str = "operator"
    id: str = ""  # set by whoever records it; the state remembers the last one handled


@dataclass(frozen=True)
class Verb:
    """One command that records an intent, as both command lines show it."""

    name: str
    action: IntentAction
    help: str
    allowed_in: tuple[Phase, ...]
    reason_required: bool = False


# Retry is for a rolled-back canary only: after a promotion the canary is the stable
# version, so "retry" would roll users back onto the old one; start a new rollout instead.
VERBS: tuple[Verb, ...] = (
    Verb("promote", "promote", "advance the canary one step now", UNFINISHED),
    Verb("promote --full", "promote_full", "straight to 100% and promote", UNFINISHED),
    Verb("rollback", "rollback", "send all traffic back to stable", UNFINISHED, True),
    Verb("pause", "pause", "hold the canary at its step", ("Pending", "Progressing")),
    Verb("resume", "resume", "continue a paused rollout", ("Paused",)),
    Verb(
        "retry", "retry", "start a rolled-back rollout again from the first step", ("RolledBack",)
    ),
)
BY_ACTION: dict[IntentAction, Verb] = {verb.action: verb for verb in VERBS}


def refusal(action: IntentAction, phase: Phase) -> str | None:
    """Why the action is not allowed in the phase, and what is; None when it is allowed."""
    verb = BY_ACTION[action]
    if phase in verb.allowed_in:
        return None
    allowed = [v.name for v in VERBS if phase in v.allowed_in]
    why = " (the canary is already the stable version)" if action == "retry" else ""
    return (
        f"cannot {verb.name}: the rollout is {phase}{why}; {verb.name} needs "
        f"{' or '.join(verb.allowed_in)}"
        + (f"; allowed now: {', '.join(allowed)}" if allowed else "")
    )
