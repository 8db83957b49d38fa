"""A rollout's state: where it is, what happened, and what the last tick saw. Pure."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from modelcanary.rollout.evidence import Baseline
from modelcanary.rollout.intents import Phase
from modelcanary.rollout.judge import Check
from modelcanary.rollout.ports import FiringAlert, GateResult, GoldenResult, ShadowCounts

Action = Literal[
    "shadow", "start", "advance", "hold", "pause", "resume", "promote", "rollback", "restart"
]


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
            checks=tuple(Check(**{"value": None, **c}) for c in data.get("checks", ())),
            alerts=tuple(FiringAlert(**a) for a in data.get("alerts", ())),
            reason=data["reason"],
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
    baseline: Baseline | None = None  # counters at the canary's first step (evidence.py)
    unready_since: float | None = None  # when the canary, holding weight, stopped being ready
    created_at: float | None = None  # when the rollout was first seen (Pending's deadline)
    golden: GoldenResult | None = None  # the latest golden-sample check before traffic
    gate: GateResult | None = None  # the holdout gate's verdict before traffic
    shadow_started_at: float | None = None  # when the shadow comparison began
    shadow_baseline: ShadowCounts | None = None  # the comparator's counters then

    def to_json(self) -> dict[str, Any]:
        """Without null values inside lists: an API server drops them there in a merge
        patch, so the state is written as it reads back (`from_json` defaults them). Nulls
        outside lists stay: in a merge patch they remove the old value."""
        written: dict[str, Any] = _without_nulls_in_lists(asdict(self))
        return written

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        history = tuple(Transition(**t) for t in data.get("history", ()))
        analysis, baseline = data.get("analysis"), data.get("baseline")
        golden, gate = data.get("golden"), data.get("gate")
        shadow = data.get("shadow_baseline")
        return cls(
            **{
                **data,
                "history": history,
                "analysis": LastAnalysis.from_json(analysis) if analysis else None,
                "baseline": Baseline.from_json(baseline) if baseline else None,
                "golden": GoldenResult(**golden) if golden else None,
                "gate": GateResult(**gate) if gate else None,
                "shadow_baseline": ShadowCounts.from_json(shadow) if shadow else None,
            }
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def _without_nulls_in_lists(value: Any, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_nulls_in_lists(v, in_list)
            for k, v in value.items()
            if v is not None or not in_list
        }
    if isinstance(value, list | tuple):
        return [_without_nulls_in_lists(v, True) for v in value]
    return value
