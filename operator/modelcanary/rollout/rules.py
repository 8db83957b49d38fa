"""The stepper's rules 1 to 3 and 5 to 10, one function each (rules 4 and 4b, before
the first step, are in `pretraffic`). A rule returns its decision, or None to leave it to
the next; the stepper's docstring says each in words and `stepper.RULES` orders them. Pure.
"""

from __future__ import annotations

from modelcanary.durations import parse_duration
from modelcanary.rollout.decision import Decision, Situation
from modelcanary.rollout.intents import FINISHED, Intent, refusal
from modelcanary.rollout.ports import FiringAlert
from modelcanary.rollout.pretraffic import firing
from modelcanary.rollout.state import RolloutState, Transition

# A rollback alert on fewer canary requests over its window holds instead, and the checks
# decide: ten at the production limits (errors above 1%, requests slower than the P99).
ALERT_MIN_REQUESTS = 1000


def operator_intent(s: Situation) -> Decision | None:
    """Rule 1: act on an operator intent where the intent table allows it in the phase;
    otherwise hold, saying why it was ignored."""
    intent, state, spec = s.intent, s.state, s.spec
    if intent is None:
        return None
    by = intent.by
    refused = refusal(intent.action, state.phase)
    if refused is not None:
        return s.decision("hold", f"{intent.action} ignored: {refused}", by=by)
    if intent.action == "retry":
        return s.decision("restart", _asked(intent, "retry from the first step"), -1, 0, 0, by)
    if intent.action == "rollback":
        return s.decision("rollback", _asked(intent, "rollback"), weight=0, by=by)
    if intent.action == "pause":
        return s.decision("pause", _asked(intent, "pause"), by=by)
    if intent.action == "resume":
        return s.decision("resume", _asked(intent, "resume"), by=by)
    if intent.action == "promote_full":
        return s.decision("promote", _asked(intent, "full promotion"), s.last, 100, by=by)
    if state.step >= s.last:
        return s.decision("promote", _asked(intent, "promotion"), s.last, 100, by=by)
    step = state.step + 1
    return s.decision(
        "advance", _asked(intent, f"step {step + 1} now"), step, spec.steps[step], by=by
    )


def finished(s: Situation) -> Decision | None:
    """Rule 2: a promoted or rolled-back rollout holds."""
    if s.state.phase not in FINISHED:
        return None
    return s.decision("hold", f"rollout is {s.state.phase}")


def rollback_alert(s: Situation) -> Decision | None:
    """Rule 3: a firing `rollbackOn` alert for the canary rolls back, whatever the step,
    unless the canary holds weight on too few requests to be evidence (then rule 9)."""
    alert = _rollback_alert(s)
    if alert is None or _too_few_for_alerts(s):
        return None
    return s.decision(
        "rollback",
        f"alert {alert.name} ({alert.severity}) fired for version {s.spec.canary.version}",
        weight=0,
    )


def paused_by_hand_or_late(s: Situation) -> Decision | None:
    """Rule 5: a rollout paused by hand holds; past `progressDeadline` any other rolls
    back."""
    paused = _pause(s.state)
    if s.state.phase == "Paused" and (paused is None or paused.by != "controller"):
        return s.decision("hold", "paused")
    started_at, spec = s.state.started_at, s.spec
    if started_at is None or s.now - started_at <= spec.progress_deadline_s:
        return None
    return s.decision(
        "rollback", f"not promoted within progressDeadline {spec.progress_deadline}", weight=0
    )


def unready_with_weight(s: Situation) -> Decision | None:
    """Rule 6: a canary that holds weight and has not been ready for an `interval` stopped
    serving: roll back."""
    since = s.unready_since
    if since is None or s.now - since < s.spec.interval_s:
        return None
    return s.decision(
        "rollback",
        f"the canary has not been ready for {s.now - since:.0f}s while holding "
        f"{s.state.weight}% of the traffic",
        weight=0,
    )


def failed_checks(s: Situation) -> Decision | None:
    """Rule 7: a failed verdict rolls back, or with `failureLimit` counts towards it, at
    most once per `interval`."""
    verdict, state, spec, now = s.verdict, s.state, s.spec, s.now
    if verdict.result != "fail":
        return None
    failed = "; ".join(f"{c.name}: {c.detail}" for c in verdict.failures())
    limit = spec.analysis.failure_limit
    counted_at = state.last_failure_at
    if counted_at is not None and now - counted_at < spec.interval_s:
        return s.decision(
            "hold",
            f"check failing ({state.failures} of {limit} tolerated; counted once per "
            f"interval, next in {spec.interval_s - (now - counted_at):.0f}s): {failed}",
        )
    failures = state.failures + 1
    if failures > limit:
        return s.decision(
            "rollback",
            f"checks failed {failures} times (limit {limit}): {failed}",
            weight=0,
            failures=failures,
            failure_at=now,
        )
    return s.decision(
        "hold",
        f"check failed ({failures} of {limit} tolerated): {failed}",
        failures=failures,
        failure_at=now,
    )


def paused_by_controller(s: Situation) -> Decision | None:
    """Rule 7b: a rollout the controller paused (no data) holds; only rules 5 to 7 (the
    deadline, evidence of a regression) end it."""
    paused = _pause(s.state)
    if paused is None:
        return None
    return s.decision("hold", f"paused: {paused.reason}", failures=_failures(s))


def no_data(s: Situation) -> Decision | None:
    """Rule 8: no data for longer than `noData.after` pauses or rolls back, as
    configured."""
    verdict, spec = s.verdict, s.spec
    since = s.data_at if s.data_at is not None else s.state.step_started_at
    if verdict.has_data or since is None or s.now - since <= spec.no_data_after_s:
        return None
    why = "; ".join(verdict.problems) or "no canary requests"
    reason = f"no data for more than {spec.analysis.no_data.after} ({why})"
    if spec.analysis.no_data.action == "rollback":
        return s.decision("rollback", reason, weight=0, failures=_failures(s))
    return s.decision("pause", reason, failures=_failures(s))


def holding(s: Situation) -> Decision | None:
    """Rule 9: a firing `holdOn` alert holds, as does a `rollbackOn` one on too few
    requests (rule 3), and an inconclusive verdict."""
    canary, verdict, failures = s.spec.canary.version, s.verdict, _failures(s)
    alert = firing(s.alerts, canary, s.spec.analysis.alerts.hold_on)
    if alert is not None:
        return s.decision(
            "hold",
            f"holding: alert {alert.name} ({alert.severity}) for version {canary}",
            failures=failures,
        )
    held = _rollback_alert(s)  # on too few requests, or rule 3 would have rolled back
    if held is not None:
        return s.decision(
            "hold",
            f"holding: alert {held.name} ({held.severity}) for version {canary} on "
            f"{verdict.canary_samples} canary requests, too few to roll back on: the checks "
            "decide",
            failures=failures,
        )
    if verdict.result != "inconclusive":
        return None
    details = "; ".join(
        dict.fromkeys(c.detail for c in verdict.checks if c.result == "inconclusive" and c.detail)
    )
    return s.decision("hold", f"waiting: {details or 'checks inconclusive'}", failures=failures)


def advance_or_promote(s: Situation) -> Decision:
    """Rule 10, the last word: after `interval` at the step a passing verdict advances, or
    at the last step promotes; before the step to full traffic it waits as `beforeFull`
    says; within the interval it holds."""
    state, spec, now, failures = s.state, s.spec, s.now, _failures(s)
    at_step = now - (state.step_started_at or now)
    if at_step < spec.interval_s:
        return s.decision(
            "hold",
            f"step {state.step + 1} healthy; {spec.interval_s - at_step:.0f}s left",
            failures=failures,
        )
    if state.step >= s.last:
        return s.decision(
            "promote", "all checks passed at every step", s.last, 100, failures=failures
        )
    waiting = _before_full(s, at_step)
    if waiting is not None:
        return s.decision("hold", waiting, failures=failures)
    step = state.step + 1
    return s.decision(
        "advance", f"checks passed; step {step + 1}", step, spec.steps[step], failures=failures
    )


def _rollback_alert(s: Situation) -> FiringAlert | None:
    """The firing `rollbackOn` alert for the canary, if any."""
    return firing(s.alerts, s.spec.canary.version, s.spec.analysis.alerts.rollback_on)


def _too_few_for_alerts(s: Situation) -> bool:
    """The canary holds weight but served too few requests for an alert to be evidence."""
    verdict = s.verdict
    return verdict.has_data and verdict.canary_samples < ALERT_MIN_REQUESTS and s.state.weight > 0


def _failures(s: Situation) -> int:
    """The failures counted so far, reset by a passing verdict with `resetFailuresOnPass`
    (rules 7b to 10, once no check failed)."""
    if s.verdict.result == "pass" and s.spec.analysis.reset_failures_on_pass:
        return 0
    return s.state.failures


def _before_full(s: Situation, at_step: float) -> str | None:
    """Why the canary waits before its next step to full traffic, if it does."""
    spec, state = s.spec, s.state
    wanted = spec.analysis.before_full.error_ratio_above_stable
    max_wait = parse_duration(spec.analysis.before_full.max_wait)
    if wanted is None or spec.steps[state.step + 1] != 100 or at_step >= max_wait:
        return None
    check = next((c for c in s.verdict.checks if c.name == "error_ratio_above_stable"), None)
    if check is None or check.ruled_out is None or check.ruled_out <= wanted:
        return None
    return (
        f"before full traffic: the canary's error ratio is at most "
        f"{check.ruled_out * 100:.2f} points above stable's so far, {wanted * 100:g} wanted "
        f"({max_wait - at_step:.0f}s left of maxWait)"
    )


def _pause(state: RolloutState) -> Transition | None:
    """The pause that holds the rollout, if it is paused and its history says so."""
    if state.phase != "Paused":
        return None
    return next((t for t in reversed(state.history) if t.action == "pause"), None)


def _asked(intent: Intent, what: str) -> str:
    return f"{what} requested by {intent.by}" + (f": {intent.reason}" if intent.reason else "")
