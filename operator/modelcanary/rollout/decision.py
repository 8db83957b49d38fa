"""What the stepper decides on (a `Situation`) and what it decides (a `Decision`). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelcanary.rollout.intents import Intent
from modelcanary.rollout.judge import Verdict
from modelcanary.rollout.ports import FiringAlert, GateResult, GoldenResult
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import Action, RolloutState


@dataclass(frozen=True)
class Decision:
    """The one thing to do now, and the state's fields as it leaves them."""

    action: Action
    step: int
    weight: int
    reason: str
    failures: int
    last_data_at: float | None
    numbers: dict[str, float | int | str] = field(default_factory=dict)
    by: str = "controller"
    last_failure_at: float | None = None
    unready_since: float | None = None


@dataclass(frozen=True)
class Situation:
    """The stepper's inputs, read by every rule: state, verdict, alerts, operator intent
    and time; the checks before traffic; whether the platform mirrors; and why the
    versions' counters could not be read (`counters`; None: they were)."""

    spec: RolloutSpec
    state: RolloutState
    verdict: Verdict
    alerts: tuple[FiringAlert, ...]
    intent: Intent | None
    now: float
    golden: GoldenResult | None = None
    gate: GateResult | None = None
    shadow_available: bool = False
    counters: str | None = None

    @property
    def last(self) -> int:
        """The index of the last step."""
        return len(self.spec.steps) - 1

    @property
    def ready(self) -> bool:
        """The canary is ready (no failing or inconclusive readiness check)."""
        return all(c.result == "pass" for c in self.verdict.checks if c.name == "canary_ready")

    @property
    def data_at(self) -> float | None:
        """When the canary's data was last seen: now, if the verdict has data and no
        problem."""
        verdict = self.verdict
        return self.now if verdict.has_data and not verdict.problems else self.state.last_data_at

    @property
    def unready_since(self) -> float | None:
        """Since when a canary that holds weight has not been ready; only such a canary
        must be ready."""
        if self.ready or self.state.weight == 0:
            return None
        return self.state.unready_since or self.now

    def decision(
        self,
        action: Action,
        reason: str,
        step: int | None = None,
        weight: int | None = None,
        failures: int | None = None,
        by: str = "controller",
        failure_at: float | None = None,
    ) -> Decision:
        """A decision; what it does not set stays as the state has it."""
        state = self.state
        gate = self.gate.numbers if self.gate is not None else {}
        return Decision(
            action,
            state.step if step is None else step,
            state.weight if weight is None else weight,
            reason,
            state.failures if failures is None else failures,
            self.data_at,
            self.verdict.numbers() | gate,
            by,
            failure_at if failure_at is not None else state.last_failure_at,
            self.unready_since,
        )
