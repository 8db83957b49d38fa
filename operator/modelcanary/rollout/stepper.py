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
   Waiting for any of them ends
   at `progressDeadline` from when the rollout was first seen, with a rollback. Then, with
   a shadow comparison (spec `shadow`, and a platform that mirrors), the rollout shadows.
4b. Shadowing: the canary takes no user traffic while its answers to a share of stable's
   requests are compared with stable's. Evidence of disagreement rolls back; a `holdOn`
   alert or no data holds (no data past `noData.after` with action rollback rolls back);
   after `shadow.minSamples` pairs, or `shadow.maxDuration` with no evidence against it,
   the canary takes its first step.
5. A rollout paused by hand holds, past `progressDeadline` too. Past `progressDeadline`,
   any other rolls back; one the controller paused (noData) also rolls back on rules 6
   and 7 (evidence of a regression), and otherwise holds.
6. A canary that holds weight and has not been ready for an `interval` rolls back.
7. A failed verdict (evidence of a regression at level alpha) rolls back, or with
   `failureLimit` > 0 counts towards it, at most once per `interval`. Passing checks reset
   the count only with `resetFailuresOnPass`.
8. No data for longer than `noData.after` pauses or rolls back, as configured.
9. A firing `holdOn` alert holds, as does a `rollbackOn` one on too few requests (rule 3).
   An inconclusive verdict holds.
10. A passing verdict after `interval` at the step advances, or at the last step promotes:
   with no evidence against it, a canary at low traffic advances as one at high traffic.
   Before the step to full traffic it waits, up to `beforeFull.maxWait`, until its error
   ratio is shown at most `beforeFull.errorRatioAboveStable` above stable's.

Pure; `apply` turns a decision into the next state and records it in the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from modelcanary.durations import parse_duration
from modelcanary.rollout.intents import FINISHED, Intent, Phase, refusal
from modelcanary.rollout.judge import Verdict
from modelcanary.rollout.ports import FiringAlert, GateResult, GoldenResult
from modelcanary.rollout.pretraffic import firing, pending, shadowing
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import Action, RolloutState, Transition

# A rollback alert on fewer canary requests over its window holds instead, and the checks
# decide: ten at the production limits (errors above 1%, requests slower than the P99).
ALERT_MIN_REQUESTS = 1000


@dataclass(frozen=True)
class Decision:
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
    """The one thing to do now; `counters` says why the versions' counters could not be
    read (None: they were)."""
    last = len(spec.steps) - 1
    data_at = now if verdict.has_data and not verdict.problems else state.last_data_at
    numbers = verdict.numbers() | (gate.numbers if gate is not None else {})
    ready = all(c.result == "pass" for c in verdict.checks if c.name == "canary_ready")
    unready_since = (
        None if ready or state.weight == 0 else state.unready_since or now
    )  # only a canary that holds weight must be ready

    def make(
        action: Action,
        reason: str,
        step: int | None = None,
        weight: int | None = None,
        failures: int | None = None,
        by: str = "controller",
        failure_at: float | None = None,
    ) -> Decision:
        return Decision(
            action,
            state.step if step is None else step,
            state.weight if weight is None else weight,
            reason,
            state.failures if failures is None else failures,
            data_at,
            numbers,
            by,
            failure_at if failure_at is not None else state.last_failure_at,
            unready_since,
        )

    # 1. operator intent, where the intent table allows it
    if intent is not None:
        by = intent.by
        refused = refusal(intent.action, state.phase)
        if refused is not None:
            return make("hold", f"{intent.action} ignored: {refused}", by=by)
        if intent.action == "retry":
            return make("restart", _asked(intent, "retry from the first step"), -1, 0, 0, by)
        if intent.action == "rollback":
            return make("rollback", _asked(intent, "rollback"), weight=0, by=by)
        if intent.action == "pause":
            return make("pause", _asked(intent, "pause"), by=by)
        if intent.action == "resume":
            return make("resume", _asked(intent, "resume"), by=by)
        if intent.action == "promote_full":
            return make("promote", _asked(intent, "full promotion"), last, 100, by=by)
        if state.step >= last:
            return make("promote", _asked(intent, "promotion"), last, 100, by=by)
        step = state.step + 1
        return make(
            "advance", _asked(intent, f"step {step + 1} now"), step, spec.steps[step], by=by
        )

    # 2. finished rollouts hold
    if state.phase in FINISHED:
        return make("hold", f"rollout is {state.phase}")

    # 3. alerts that roll back, whatever the step, but on too few requests to be evidence
    canary = spec.canary.version
    alert = firing(alerts, canary, spec.analysis.alerts.rollback_on)
    few = verdict.has_data and verdict.canary_samples < ALERT_MIN_REQUESTS and state.weight > 0
    if alert is not None and not few:
        return make(
            "rollback",
            f"alert {alert.name} ({alert.severity}) fired for version {canary}",
            weight=0,
        )
    held = alert  # a rollback alert on too few requests: it holds (rule 9)

    # 4. before the first step: a ready canary, its golden samples, the holdout gate
    if state.phase == "Pending":
        if golden is not None and not golden.passed:
            return make(
                "rollback", f"golden samples do not match PyTorch: {golden.worst}", weight=0
            )
        if gate is not None and gate.outcome == "worse":
            return make("rollback", f"worse than stable on the holdout: {gate.summary}", weight=0)
        if ready and golden is not None and gate is not None:
            if shadow_available and spec.shadow.enabled:  # no traffic yet: no counters needed
                return make(
                    "shadow",
                    f"golden samples match ({golden.worst}); holdout {gate.outcome}: "
                    f"{gate.summary}; shadowing {spec.shadow.percent}% of stable's requests",
                )
            if counters is not None:  # evidence counts from a real observation
                return pending(spec, state, _unread(counters), now, make)
            unmirrored = "; no shadow comparison here" if spec.shadow.enabled else ""
            return make(
                "start",
                f"golden samples match ({golden.worst}); holdout {gate.outcome}: "
                f"{gate.summary}{unmirrored}; step 1",
                0,
                spec.steps[0],
            )
        return pending(spec, state, _missing(ready, golden), now, make)

    # 4b. shadowing: compared on a share of stable's requests, before any user traffic
    if state.phase == "Shadowing":
        return shadowing(spec, state, verdict, alerts, counters, now, make)

    # 5. paused by hand, deadline
    paused = _pause(state)
    if state.phase == "Paused" and (paused is None or paused.by != "controller"):
        return make("hold", "paused")
    if state.started_at is not None and now - state.started_at > spec.progress_deadline_s:
        return make(
            "rollback", f"not promoted within progressDeadline {spec.progress_deadline}", weight=0
        )

    # 6. a canary that holds weight but is not ready for an interval stopped serving
    if unready_since is not None and now - unready_since >= spec.interval_s:
        return make(
            "rollback",
            f"the canary has not been ready for {now - unready_since:.0f}s while holding "
            f"{state.weight}% of the traffic",
            weight=0,
        )

    # 7. failed checks
    failures = state.failures
    if verdict.result == "fail":
        failed = "; ".join(f"{c.name}: {c.detail}" for c in verdict.failures())
        limit = spec.analysis.failure_limit
        counted_at = state.last_failure_at
        if counted_at is not None and now - counted_at < spec.interval_s:
            return make(
                "hold",
                f"check failing ({failures} of {limit} tolerated; counted once per interval, "
                f"next in {spec.interval_s - (now - counted_at):.0f}s): {failed}",
            )
        failures += 1
        if failures > limit:
            return make(
                "rollback",
                f"checks failed {failures} times (limit {limit}): {failed}",
                weight=0,
                failures=failures,
                failure_at=now,
            )
        return make(
            "hold",
            f"check failed ({failures} of {limit} tolerated): {failed}",
            failures=failures,
            failure_at=now,
        )
    if verdict.result == "pass" and spec.analysis.reset_failures_on_pass:
        failures = 0
    if paused is not None:  # paused by the controller: only evidence or the deadline ends it
        return make("hold", f"paused: {paused.reason}", failures=failures)

    # 8. no data
    since = data_at if data_at is not None else state.step_started_at
    if not verdict.has_data and since is not None and now - since > spec.no_data_after_s:
        action = spec.analysis.no_data.action
        why = "; ".join(verdict.problems) or "no canary requests"
        reason = f"no data for more than {spec.analysis.no_data.after} ({why})"
        if action == "rollback":
            return make("rollback", reason, weight=0, failures=failures)
        return make("pause", reason, failures=failures)

    # 9. holding alerts (and rollback alerts on too few requests), inconclusive verdicts
    alert = firing(alerts, canary, spec.analysis.alerts.hold_on)
    if alert is not None:
        return make(
            "hold",
            f"holding: alert {alert.name} ({alert.severity}) for version {canary}",
            failures=failures,
        )
    if held is not None:
        return make(
            "hold",
            f"holding: alert {held.name} ({held.severity}) for version {canary} on "
            f"{verdict.canary_samples} canary requests, too few to roll back on: the checks "
            "decide",
            failures=failures,
        )
    if verdict.result == "inconclusive":
        details = "; ".join(
            dict.fromkeys(
                c.detail for c in verdict.checks if c.result == "inconclusive" and c.detail
            )
        )
        return make("hold", f"waiting: {details or 'checks inconclusive'}", failures=failures)

    # 10. advance or promote once the step's interval has passed
    at_step = now - (state.step_started_at or now)
    if at_step < spec.interval_s:
        return make(
            "hold",
            f"step {state.step + 1} healthy; {spec.interval_s - at_step:.0f}s left",
            failures=failures,
        )
    if state.step >= last:
        return make("promote", "all checks passed at every step", last, 100, failures=failures)
    waiting = _before_full(spec, state, verdict, at_step)
    if waiting is not None:
        return make("hold", waiting, failures=failures)
    step = state.step + 1
    return make(
        "advance", f"checks passed; step {step + 1}", step, spec.steps[step], failures=failures
    )


def _before_full(
    spec: RolloutSpec, state: RolloutState, verdict: Verdict, at_step: float
) -> str | None:
    """Why the canary waits before its next step to full traffic, if it does."""
    wanted = spec.analysis.before_full.error_ratio_above_stable
    max_wait = parse_duration(spec.analysis.before_full.max_wait)
    if wanted is None or spec.steps[state.step + 1] != 100 or at_step >= max_wait:
        return None
    check = next((c for c in verdict.checks if c.name == "error_ratio_above_stable"), None)
    if check is None or check.ruled_out is None or check.ruled_out <= wanted:
        return None
    return (
        f"before full traffic: the canary's error ratio is at most "
        f"{check.ruled_out * 100:.2f} points above stable's so far, {wanted * 100:g} wanted "
        f"({max_wait - at_step:.0f}s left of maxWait)"
    )


def _missing(ready: bool, golden: GoldenResult | None) -> tuple[str, str]:
    """What a pending rollout never got, and what it waits for, first."""
    if not ready:
        return "the canary was not ready", "the canary to be ready"
    if golden is None:
        return "the golden-sample check did not run", "the golden-sample check of the canary"
    return "the holdout gate did not run", "the holdout gate"


def _unread(counters: str) -> tuple[str, str]:
    return (
        f"the counters were never read ({counters})",
        f"the counters before the first step ({counters})",
    )


def _pause(state: RolloutState) -> Transition | None:
    """The pause that holds the rollout, if it is paused and its history says so."""
    if state.phase != "Paused":
        return None
    return next((t for t in reversed(state.history) if t.action == "pause"), None)


def _asked(intent: Intent, what: str) -> str:
    return f"{what} requested by {intent.by}" + (f": {intent.reason}" if intent.reason else "")


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
