"""The stepper: state, verdict, alerts, operator intent and time in; one decision out.

Rules, in order of precedence:

1. Operator intent, where `intents.VERBS` allows it in the phase (otherwise ignored,
   saying why): rollback, pause, resume, promote (next step now), promote --full, and
   retry, which restarts a rolled-back rollout from the first step.
2. A finished rollout (promoted, rolled back) holds.
3. A firing alert of a `rollbackOn` severity for the canary rolls back at once, whatever
   the step or phase, unless the canary holds weight and served fewer than
   `ALERT_MIN_REQUESTS` in the analysis window: too few to be evidence, so it holds
   (rule 9) and the checks decide.
4. Before the first step, the canary must be ready, the golden-sample check must pass and
   the holdout gate must not find the canary worse than stable on labelled data; either
   failure rolls back before any user traffic reaches the canary ("not checked", for
   versions without a holdout, lets it start and says so). The first step also waits until
   Prometheus has answered with stable's counters (the canary's are read whenever they
   exist: evidence.watch), so evidence counts from a real observation, never from zeros.
   Waiting for any of them ends at `progressDeadline` from when the rollout was first
   seen, with a rollback. Then, with a shadow comparison (spec `shadow`, and a platform
   that mirrors), the rollout shadows.
4b. Shadowing: the canary takes no user traffic while its answers to a share of stable's
   requests are compared with stable's. Evidence of disagreement (top-1 classes, or
   numeric answers beyond tolerance) rolls back; a `holdOn` alert or no data holds (no
   data past `noData.after` with action rollback rolls back); after `shadow.minSamples`
   pairs of every output compared, or `shadow.maxDuration` with no evidence against it,
   the canary takes its first step.
5. A rollout paused by hand holds, past `progressDeadline` too. Past `progressDeadline`,
   any other rolls back, one the controller paused included.
6. A canary that holds weight and has not been ready for an `interval` rolls back.
7. A failed verdict (evidence of a regression at level alpha) rolls back, or with
   `failureLimit` > 0 counts towards it, at most once per `interval`. Passing checks reset
   the count only with `resetFailuresOnPass`.
7b. A rollout the controller paused (noData) holds: only rules 5 to 7 end it (the
   deadline, evidence of a regression).
8. No data for longer than `noData.after` pauses or rolls back, as configured.
9. A firing `holdOn` alert holds, as does a `rollbackOn` one on too few requests (rule 3).
   An inconclusive verdict holds.
10. A passing verdict after `interval` at the step advances, or at the last step promotes:
   with no evidence against it, a canary at low traffic advances as one at high traffic.
   Before the step to full traffic it waits, up to `beforeFull.maxWait`, until its error
   ratio is shown at most `beforeFull.errorRatioAboveStable` above stable's.

`RULES` is this list in code, one function a rule (`rules`, `pretraffic`); `decide` asks
each in turn and takes the first decision, and rule 10 decides when none does. Pure;
`apply` turns a decision into the next state and records it in the history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from modelcanary.rollout.decision import Decision, Situation
from modelcanary.rollout.intents import Intent, Phase
from modelcanary.rollout.judge import Verdict
from modelcanary.rollout.ports import FiringAlert, GateResult, GoldenResult
from modelcanary.rollout.pretraffic import before_first_step, shadowing
from modelcanary.rollout.rules import (
    advance_or_promote,
    failed_checks,
    finished,
    holding,
    no_data,
    operator_intent,
    paused_by_controller,
    paused_by_hand_or_late,
    rollback_alert,
    unready_with_weight,
)
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import RolloutState, Transition

Rule = Callable[[Situation], Decision | None]  # its decision, or None: the next rule's turn

RULES: tuple[Rule, ...] = (
    operator_intent,  # 1
    finished,  # 2
    rollback_alert,  # 3
    before_first_step,  # 4
    shadowing,  # 4b
    paused_by_hand_or_late,  # 5
    unready_with_weight,  # 6
    failed_checks,  # 7
    paused_by_controller,  # 7b
    no_data,  # 8
    holding,  # 9
)  # 10: advance_or_promote, when none of these decides


def decide(
    spec: RolloutSpec,
    state: RolloutState,
    verdict: Verdict,
    alerts: tuple[FiringAlert, ...],
    intent: Intent | None,
    now: float,
    golden: GoldenResult | None = None,
    gate: GateResult | None = None,
    shadow_available: bool = False,
    counters: str | None = None,
) -> Decision:
    """The one thing to do now: the first rule's decision; `counters` says why the
    versions' counters could not be read (None: they were)."""
    situation = Situation(
        spec, state, verdict, alerts, intent, now, golden, gate, shadow_available, counters
    )
    for rule in RULES:
        decision = rule(situation)
        if decision is not None:
            return decision
    return advance_or_promote(situation)


def apply(state: RolloutState, decision: Decision, now: float) -> RolloutState:
    """The state after a decision; every transition but a plain hold goes to the history."""
    phase: Phase = state.phase
    started_at, step_started_at = state.started_at, state.step_started_at
    action = decision.action
    shadow_started_at = state.shadow_started_at
    if action == "shadow":
        phase, shadow_started_at = "Shadowing", now
    elif action in ("start", "advance"):
        phase, step_started_at = "Progressing", now
        started_at = started_at if started_at is not None else now
    elif action == "pause":
        phase = "Paused"
    elif action == "resume":
        phase, step_started_at = "Progressing", now
    elif action == "promote":
        phase = "Promoted"
    elif action == "rollback":
        phase = "RolledBack"
    elif action == "restart":  # a new attempt, with a deadline of its own
        return RolloutState(
            history=(*state.history, _transition(decision, "Pending", now)), created_at=now
        )
    new = replace(
        state,
        phase=phase,
        step=decision.step,
        weight=decision.weight,
        started_at=started_at,
        step_started_at=step_started_at,
        failures=decision.failures,
        last_data_at=decision.last_data_at,
        last_failure_at=decision.last_failure_at,
        unready_since=decision.unready_since,
        created_at=state.created_at if state.created_at is not None else now,
        shadow_started_at=shadow_started_at,
    )
    if action != "hold" or decision.failures != state.failures:
        new = replace(new, history=(*state.history, _transition(decision, phase, now)))
    return new


def _transition(decision: Decision, phase: Phase, now: float) -> Transition:
    return Transition(
        at=now,
        action=decision.action,
        phase=phase,
        step=decision.step,
        weight=decision.weight,
        reason=decision.reason,
        numbers=dict(decision.numbers),
        by=decision.by,
    )
