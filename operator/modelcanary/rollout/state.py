"""A rollout's state: where it is, what happened, and what the last tick saw. Pure."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

from modelcanary.rollout.intents import Phase
from modelcanary.rollout.judge import Check
from modelcanary.rollout.ports import FiringAlert

Action = Literal["start", "advance", "hold", "pause", "resume", "promote", "rollback", "restart"]
T = TypeVar("T")


def _lenient(cls: type[T], data: dict[str, Any]) -> T:
    """CLS from DATA, a missing key taken as None (or the field's default).

    Minimal local fix until issue 12 defect 2 is fixed properly: a real API server drops
    null values inside lists written by merge-patch (a check without a value)."""
    missing = {
        f.name: None
        for f in fields(cls)  # type: ignore[arg-type]
        if f.name not in data and f.default is MISSING and f.default_factory is MISSING
    }
    return cls(**missing, **data)


@dataclass(frozen=True)
class Transition:
    at: float
    action: Action
    phase: Phase
    step: int
    weight: int
    reason: str
    numbers: dict[str, float | int | str] = field(default_factory=dict)
    by: str = "controller"


@dataclass(frozen=True)
class LastAnalysis:
    """What the latest tick saw and concluded, for `status`."""

    at: float
    result: str
    checks: tuple[Check, ...]
    alerts: tuple[FiringAlert, ...]
    reason: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LastAnalysis:
        return cls(
            at=data["at"],
            result=data["result"],
            checks=tuple(_lenient(Check, c) for c in data.get("checks", ())),
            alerts=tuple(_lenient(FiringAlert, a) for a in data.get("alerts", ())),
            reason=data.get("reason", ""),
        )


@dataclass(frozen=True)
class RolloutState:
    phase: Phase = "Pending"
    step: int = -1  # index into spec.steps; -1 before the first
    weight: int = 0  # canary percent
    started_at: float | None = None
    step_started_at: float | None = None
    failures: int = 0
    last_data_at: float | None = None
    history: tuple[Transition, ...] = ()
    last_failure_at: float | None = None  # when a failed check was last counted
    applied: bool = True  # False between deciding a new weight and the router confirming it
    handled_intent: str = ""  # id of the last operator intent acted on
    analysis: LastAnalysis | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        history = tuple(_lenient(Transition, t) for t in data.get("history", ()))
        analysis = data.get("analysis")
        return cls(
            **{
                **data,
                "history": history,
                "analysis": LastAnalysis.from_json(analysis) if analysis else None,
            }
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"
