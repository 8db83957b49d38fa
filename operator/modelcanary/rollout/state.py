"""A rollout's state: where it is, what happened, and what the last tick saw. Pure.

The persisted form is validated against the dataclasses' own annotations (pydantic), so a
field added with a default is read and written with no other change, an absent one takes
its default, and one this version does not know is ignored (a newer controller's state
stays readable). `parse_state` adds the ranges: the phase, the step against the spec's
steps, the weight 0..100. Each problem is one line naming the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from modelcanary.rollout.evidence import Ledger, is_ledger
from modelcanary.rollout.intents import Phase
from modelcanary.rollout.judge import Check
from modelcanary.rollout.ports import FiringAlert, GateResult, GoldenResult, ShadowCounts

T = TypeVar("T")
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
    baseline: Ledger | None = None  # each replica's counts since the first step (evidence.py)
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
    def from_json(cls, data: object) -> RolloutState:
        """The state as `to_json` wrote it; a StateError (one line) when it is not one."""
        return parse_state(data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


class StateError(ValueError):
    """A persisted state that is not a valid rollout state; the message names the field."""


def parse_state(data: object, steps: int | None = None) -> RolloutState:
    """A state from parsed JSON, with types checked (strictly: "3" is not a step) and
    ranges: `steps`, the spec's number of steps, bounds the step (-1 is before the first)."""
    state = _validated(_state_schema(), _without_summed_baseline(_with_check_values(data)))
    last = f"{steps - 1}" if steps is not None else None
    problems = [
        f"{name}: must be an integer {what}, got {value}"
        for name, what, value, ok in (
            ("weight", "between 0 and 100", state.weight, 0 <= state.weight <= 100),
            (
                "step",
                f"between -1 (before the first step) and {last}" if last else "of at least -1",
                state.step,
                state.step >= -1 and (steps is None or state.step < steps),
            ),
            ("failures", "of at least 0", state.failures, state.failures >= 0),
        )
        if not ok
    ]
    wanted = 100 if state.phase == "Promoted" else 0 if state.phase in _NO_CANARY else None
    if not problems and wanted is not None and state.weight != wanted:
        problems.append(f"weight: a {state.phase} rollout has weight {wanted}, got {state.weight}")
    if problems:
        raise StateError("; ".join(problems))
    return state


def parse_transition(data: object) -> Transition:
    """One history entry (`rollout repair` keeps those that read)."""
    return _validated(_transition_schema(), data)


def _validated(schema: TypeAdapter[T], data: object) -> T:
    try:
        return schema.validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise StateError("; ".join(_describe(e) for e in exc.errors()[:3])) from None


_NO_CANARY = ("Pending", "Shadowing", "RolledBack")  # phases whose canary has no traffic


@cache
def _state_schema() -> TypeAdapter[RolloutState]:
    return TypeAdapter(RolloutState)


@cache
def _transition_schema() -> TypeAdapter[Transition]:
    return TypeAdapter(Transition)


def _with_check_values(data: object) -> object:
    """A check's `value` may be null, which a server drops inside lists: put it back."""
    if not isinstance(data, dict) or not isinstance(data.get("analysis"), dict):
        return data
    checks = data["analysis"].get("checks")
    if not isinstance(checks, list):
        return data
    filled = [{"value": None, **c} if isinstance(c, dict) else c for c in checks]
    return {**data, "analysis": {**data["analysis"], "checks": filled}}


def _without_summed_baseline(data: object) -> object:
    """A state written before ledgers kept a summed baseline: read it as none, and the
    engine opens a new ledger (which never counts traffic from before the rollout)."""
    if not isinstance(data, dict) or not isinstance(data.get("baseline"), dict):
        return data
    if is_ledger(data["baseline"]):
        return data
    return {**data, "baseline": None}


def _describe(error: Any) -> str:
    """One pydantic error as `path: must be ..., got <the JSON value>`."""
    where = ".".join(str(part) for part in error["loc"]) or "the state"
    if error["type"] == "missing":
        return f"{where}: missing"
    message = str(error["msg"]).replace("Input should be", "must be")
    if error["type"] == "dataclass_type":
        message = "must be an object"
    given = json.dumps(error.get("input"), default=str)
    return f"{where}: {message}, got {given if len(given) <= 60 else given[:57] + '...'}"


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
