"""The stepper, table-driven: every rule of the decision semantics."""

from __future__ import annotations

from dataclasses import replace

import pytest

from modelcanary.rollout.intents import Intent
from modelcanary.rollout.judge import Check, Verdict
from modelcanary.rollout.ports import FiringAlert, GateResult, GoldenResult
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.state import RolloutState, Transition
from modelcanary.rollout.stepper import apply, decide

ANALYSIS = {"failureLimit": 2, "noData": {"after": "1m", "action": "pause"}}
VERSIONS = {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}}
TIMING = {"steps": [5, 50, 100], "interval": "30s", "progressDeadline": "10m"}
SPEC = parse_spec({**VERSIONS, **TIMING, "analysis": ANALYSIS}, "test")
T0 = 1_000_000.0


def verdict(result: str, samples: int = 500, problem: str | None = None) -> Verdict:
    value = {"pass": 0.001, "fail": 0.2, "inconclusive": None}[result]
    check = Check(
        "error_ratio",
        value,
        0.01,
        samples,
        result,
        {
            "pass": "",
            "fail": "20 errors in 100 canary requests",
            "inconclusive": "no canary requests yet",
        }[result],
    )  # type: ignore[arg-type]
    return Verdict((check,), samples, (problem,) if problem else ())


PASS, FAIL, MANY = verdict("pass"), verdict("fail"), verdict("pass", samples=5000)
NO_DATA = verdict("inconclusive", samples=0)


def at_step(
    step: int, since: float = 40, failures: int = 0, phase: str = "Progressing", data_ago: float = 0
) -> RolloutState:
    return RolloutState(
        phase=phase,
        step=step,
        weight=SPEC.steps[step],
        started_at=T0 - 100,
        step_started_at=T0 - since,
        failures=failures,
        last_data_at=T0 - data_ago,
    )  # type: ignore[arg-type]


def paused_by(who: str, data_ago: float = 0) -> RolloutState:
    """At step 2, paused by a person or by the controller (no data)."""
    reason = "pause requested by ana"
    if who == "controller":
        reason = "no data for more than 1m (no canary requests)"
    pause = Transition(T0 - 60, "pause", "Paused", 1, 50, reason, by=who)
    return replace(at_step(1, since=300, phase="Paused", data_ago=data_ago), history=(pause,))


def run(
    state: RolloutState,
    v: Verdict = PASS,
    alerts: tuple[FiringAlert, ...] = (),
    intent: Intent | None = None,
    golden: GoldenResult | None = None,
    spec: RolloutSpec = SPEC,
    gate: GateResult | str | None = "asked",
    counters: str | None = None,
):  # type: ignore[no-untyped-def]
    if gate == "asked":  # the engine asks the gate once the golden samples match
        gate = NOT_CHECKED if golden is not None and golden.passed else None
    return decide(spec, state, v, alerts, intent, T0, golden, gate, False, counters)


NOT_CHECKED = GateResult("not checked", "neither digits:1 nor digits:2 has a labelled holdout")
WORSE = GateResult(
    "worse",
    "accuracy of 'logits' on 360 labelled samples: canary 0.7639 [0.7173, 0.8046], stable "
    "0.9806 [0.9604, 0.9905]; canary - stable -0.2169 [-0.2603, -0.1735] at 95%, margin 0.01: "
    "worse",
    {"holdout_canary": 0.7639, "holdout_stable": 0.9806, "holdout_samples": 360},
)
NOT_WORSE = GateResult("not worse", "accuracy ...: not worse", {"holdout_canary": 0.98})
GOLDEN_OK = GoldenResult(True, "max abs err 0")


NOT_READY = Verdict(
    (Check("canary_ready", 0.0, 1.0, 1, "inconclusive", "the canary version is not ready"),)
)
CRITICAL = FiringAlert("ModelVersionHighErrorRatio", "critical", "2")
WARNING = FiringAlert("ModelVersionTrafficBelowShare", "warning", "2")


# a table: one case per line, read across
# fmt: off
RULES = [
    # golden samples before any user traffic
    (RolloutState(), {}, "hold", 0, "waiting for the golden-sample check"),
    (RolloutState(), {"golden": GoldenResult(False, "output 'logits' off by 3.1e-01 at sample 7")}, "rollback", 0, "golden samples do not match PyTorch: output 'logits' off by 3.1e-01"),
    (RolloutState(), {"golden": GoldenResult(True, "max abs err 0")}, "start", 5, "golden samples match"),
    # the holdout gate: a canary worse than stable on labelled data never takes traffic
    (RolloutState(), {"golden": GOLDEN_OK, "gate": WORSE}, "rollback", 0, "worse than stable on the holdout: accuracy of 'logits' on 360 labelled samples: canary 0.7639"),
    (RolloutState(), {"golden": GOLDEN_OK, "gate": NOT_WORSE}, "start", 5, "holdout not worse: accuracy"),
    (RolloutState(), {"golden": GOLDEN_OK, "gate": NOT_CHECKED}, "start", 5, "holdout not checked: neither digits:1 nor digits:2 has a labelled holdout"),
    # ... even while the canary is not yet ready; a gate that could not run waits
    (RolloutState(), {"v": NOT_READY, "golden": GOLDEN_OK, "gate": WORSE}, "rollback", 0, "worse than stable"),
    (RolloutState(), {"golden": GOLDEN_OK, "gate": None}, "hold", 0, "waiting for the holdout gate"),
    # healthy steps: hold for the interval, then advance, then promote
    (at_step(0, since=10), {}, "hold", 5, "step 1 healthy; 20s left"),
    (at_step(0, since=40), {}, "advance", 50, "checks passed; step 2"),
    (at_step(2, since=40), {}, "promote", 100, "all checks passed at every step"),
    # a critical alert for the canary rolls back at once, at any step, even paused
    (at_step(0, since=1), {"alerts": (CRITICAL,), "v": MANY}, "rollback", 0, "alert ModelVersionHighErrorRatio (critical) fired for version 2"),
    (at_step(1, phase="Paused"), {"alerts": (CRITICAL,), "v": MANY}, "rollback", 0, "fired for version 2"),
    (RolloutState(), {"alerts": (CRITICAL,)}, "rollback", 0, "fired for version 2"),
    # ... unless the canary served too few requests for it to be evidence: the checks decide
    (at_step(1, since=40), {"alerts": (CRITICAL,), "v": verdict("pass", samples=150)}, "hold", 50, "holding: alert ModelVersionHighErrorRatio (critical) for version 2 on 150 canary requests, too few to roll back on: the checks decide"),
    (at_step(1, failures=2), {"alerts": (CRITICAL,), "v": verdict("fail", samples=150)}, "rollback", 0, "checks failed 3 times (limit 2)"),
    # ... and without data (Prometheus unreachable, a crashed canary) it still rolls back
    (at_step(1), {"alerts": (CRITICAL,), "v": verdict("inconclusive", 0, "Prometheus at http://127.0.0.1:9 is unreachable")}, "rollback", 0, "fired for version 2"),
    # ... but not one for the stable version, nor a pending one
    (at_step(0, since=40), {"alerts": (FiringAlert("X", "critical", "1"),)}, "advance", 50, "checks passed"),
    (at_step(0, since=40), {"alerts": (FiringAlert("X", "critical", "2", "pending"),)}, "advance", 50, "checks passed"),
    # warnings hold
    (at_step(0, since=40), {"alerts": (WARNING,)}, "hold", 5, "holding: alert ModelVersionTrafficBelowShare (warning)"),
    # failed checks count; over the limit, roll back
    (at_step(1, failures=0), {"v": FAIL}, "hold", 50, "check failed (1 of 2 tolerated): error_ratio: 20 errors in 100 canary requests"),
    (at_step(1, failures=2), {"v": FAIL}, "rollback", 0, "checks failed 3 times (limit 2): error_ratio: 20 errors in 100 canary requests"),
    # too few samples: hold, never advance
    (at_step(0, since=40), {"v": verdict("inconclusive", samples=12)}, "hold", 5, "waiting: no canary requests yet"),
    # no data for longer than noData.after pauses, never promotes
    (at_step(2, since=300, data_ago=90), {"v": NO_DATA}, "pause", 100, "no data for more than 1m (no canary requests)"),
    (at_step(2, since=300, data_ago=30), {"v": NO_DATA}, "hold", 100, "waiting"),
    (at_step(1, since=300, data_ago=90), {"v": verdict("inconclusive", 0, "Prometheus at http://127.0.0.1:9 is unreachable")}, "pause", 50, "(Prometheus at http://127.0.0.1:9 is unreachable)"),
    # paused rollouts hold ...
    (at_step(1, since=300, phase="Paused"), {}, "hold", 50, "paused"),
    (paused_by("ana"), {"v": FAIL}, "hold", 50, "paused"),
    (replace(paused_by("ana"), started_at=T0 - 601), {}, "hold", 50, "paused"),  # by hand: past the deadline too
    (paused_by("controller"), {}, "hold", 50, "paused: no data for more than 1m (no canary requests)"),
    (paused_by("controller", data_ago=300), {"v": NO_DATA}, "hold", 50, "paused: no data"),
    # ... but a pause for no data is no hiding place: evidence and the deadline roll back
    (paused_by("controller"), {"v": FAIL}, "hold", 50, "check failed (1 of 2 tolerated)"),
    (replace(paused_by("controller"), failures=2), {"v": FAIL}, "rollback", 0, "checks failed 3 times (limit 2)"),
    (replace(paused_by("controller"), started_at=T0 - 601), {}, "rollback", 0, "not promoted within progressDeadline 10m"),
    # past the progress deadline
    (RolloutState(phase="Progressing", step=0, weight=5, started_at=T0 - 601, step_started_at=T0 - 1), {}, "rollback", 0, "not promoted within progressDeadline 10m"),
]
# fmt: on


@pytest.mark.parametrize(("state", "kwargs", "action", "weight", "reason"), RULES)
def test_rules(
    state: RolloutState, kwargs: dict[str, object], action: str, weight: int, reason: str
) -> None:
    decision = run(state, **kwargs)  # type: ignore[arg-type]
    assert (decision.action, decision.weight) == (action, weight), decision.reason
    assert reason in decision.reason


def test_no_data_can_roll_back_instead() -> None:
    spec = parse_spec(
        {
            **SPEC.model_dump(by_alias=True),
            "analysis": {"noData": {"after": "1m", "action": "rollback"}},
        },
        "t",
    )
    assert run(at_step(1, data_ago=90), NO_DATA, spec=spec).action == "rollback"


def test_passing_checks_reset_failures_only_when_configured() -> None:
    assert run(at_step(1, since=10, failures=2)).failures == 2
    spec = parse_spec(
        {**SPEC.model_dump(by_alias=True), "analysis": {"resetFailuresOnPass": True}}, "t"
    )
    assert run(at_step(1, since=10, failures=2), spec=spec).failures == 0


# a table: one case per line, read across
# fmt: off
INTENTS = [
    (at_step(0, since=1), Intent("promote", by="ana"), "advance", 50, "step 2 now requested by ana"),
    (at_step(2, since=1), Intent("promote", by="ana"), "promote", 100, "promotion requested by ana"),
    (at_step(0, since=1), Intent("promote_full", "hotfix", "ana"), "promote", 100, "full promotion requested by ana: hotfix"),
    (at_step(1), Intent("rollback", "wrong outputs for class 7", "ana"), "rollback", 0, "rollback requested by ana: wrong outputs for class 7"),
    (at_step(1), Intent("pause", by="ana"), "pause", 50, "pause requested by ana"),
    (at_step(1, phase="Paused"), Intent("resume", by="ana"), "resume", 50, "resume requested by ana"),
    (at_step(1), Intent("resume", by="ana"), "hold", 50, "resume ignored: cannot resume: the rollout is Progressing; resume needs Paused"),
    (RolloutState(phase="RolledBack", step=1, weight=0), Intent("retry", by="ana"), "restart", 0, "retry from the first step requested by ana"),
    (at_step(1), Intent("retry", by="ana"), "hold", 50, "retry ignored"),
    (RolloutState(phase="Promoted", step=2, weight=100), Intent("rollback", by="ana"), "hold", 100, "rollback ignored: cannot rollback: the rollout is Promoted"),
    # after a promotion the canary is the stable version: retry would undo it
    (RolloutState(phase="Promoted", step=2, weight=100), Intent("retry", by="ana"), "hold", 100, "retry ignored: cannot retry: the rollout is Promoted (the canary is already the stable version)"),
]
# fmt: on


@pytest.mark.parametrize(("state", "intent", "action", "weight", "reason"), INTENTS)
def test_intents(
    state: RolloutState, intent: Intent, action: str, weight: int, reason: str
) -> None:
    decision = run(state, intent=intent)
    assert (decision.action, decision.weight) == (action, weight), decision.reason
    assert reason in decision.reason and decision.by == intent.by


def test_a_healthy_rollout_from_start_to_promotion_records_every_transition() -> None:
    state, now = RolloutState(), T0
    state = apply(
        state, decide(SPEC, state, PASS, (), None, now, GoldenResult(True, "exact"), NOT_WORSE), now
    )
    actions = []
    while state.phase not in ("Promoted", "RolledBack") and now < T0 + 600:
        now += 10
        decision = decide(SPEC, state, PASS, (), None, now)
        state = apply(state, decision, now)
        actions.append(decision.action)
    assert state.phase == "Promoted" and state.weight == 100
    assert [t.action for t in state.history] == ["start", "advance", "advance", "promote"]
    assert [t.weight for t in state.history] == [5, 50, 100, 100]
    assert all(t.numbers.get("canary_requests") == 500 for t in state.history)
    assert actions.count("hold") == 6  # 2 holds of 10 s in each 30 s step


def test_restart_clears_the_rollout_but_keeps_its_history() -> None:
    state = RolloutState(phase="RolledBack", step=1, weight=0, failures=3, history=())
    state = apply(state, run(state, intent=Intent("retry", by="ana")), T0)
    assert (state.phase, state.step, state.weight, state.failures) == ("Pending", -1, 0, 0)
    assert state.history[-1].action == "restart" and state.history[-1].by == "ana"


def test_state_survives_json() -> None:
    state = apply(at_step(0), run(at_step(0, since=40)), T0)
    assert RolloutState.from_json(state.to_json()) == state


def test_a_failed_check_counts_once_per_interval() -> None:
    """The window outlives a tick: one bad spell must not use up failureLimit in seconds."""
    spec_interval = SPEC.interval_s
    state = at_step(1, failures=1)
    recent = replace(state, last_failure_at=T0 - spec_interval / 2)
    held = run(recent, FAIL)
    assert (held.action, held.failures) == ("hold", 1)
    assert "counted once per interval" in held.reason
    due = replace(state, last_failure_at=T0 - spec_interval)
    counted = run(due, FAIL)
    assert (counted.action, counted.failures, counted.last_failure_at) == ("hold", 2, T0)
    assert run(replace(due, failures=2), FAIL).action == "rollback"
    # the count and its time survive in the state
    after = apply(state, counted, T0)
    assert (after.failures, after.last_failure_at) == (2, T0)


# a table: one case per line, read across
# fmt: off
PENDING = [
    # a canary that is not served waits, and says so, whatever the golden check says
    (RolloutState(created_at=T0 - 10), NOT_READY, None, "hold", "waiting for the canary to be ready"),
    (RolloutState(created_at=T0 - 10), NOT_READY, GoldenResult(True, "exact"), "hold", "waiting for the canary to be ready"),
    # ... at most until progressDeadline, measured from when the rollout was first seen
    (RolloutState(created_at=T0 - 601), NOT_READY, None, "rollback", "the canary was not ready within progressDeadline 10m"),
    (RolloutState(created_at=T0 - 601), PASS, None, "rollback", "the golden-sample check did not run within progressDeadline 10m"),
    (RolloutState(created_at=T0 - 599), PASS, None, "hold", "waiting for the golden-sample check"),
    # a ready canary whose golden samples match starts, however long the wait was
    (RolloutState(created_at=T0 - 601), PASS, GoldenResult(True, "exact"), "start", "golden samples match"),
]
# fmt: on


@pytest.mark.parametrize(("state", "v", "golden", "action", "reason"), PENDING)
def test_pending_ends_at_the_deadline(
    state: RolloutState, v: Verdict, golden: GoldenResult | None, action: str, reason: str
) -> None:
    """Issue 13 defect 4: Pending held before the deadline check, so a canary that was never
    served waited forever."""
    decision = run(state, v, golden=golden)
    expected = SPEC.steps[0] if action == "start" else 0
    assert (decision.action, decision.weight) == (action, expected), decision.reason
    assert reason in decision.reason


def test_the_deadline_counts_from_when_the_rollout_was_first_seen() -> None:
    state = apply(RolloutState(), run(RolloutState(), NOT_READY), T0)
    assert (state.phase, state.created_at) == ("Pending", T0)
    later = apply(state, decide(SPEC, state, NOT_READY, (), None, T0 + 5), T0 + 5)
    assert later.created_at == T0  # kept
    assert RolloutState.from_json(later.to_json()) == later
    # a retry is a new attempt with a deadline of its own
    rolled_back = replace(later, phase="RolledBack")
    retried = apply(rolled_back, run(rolled_back, intent=Intent("retry", by="ana")), T0 + 700)
    assert (retried.phase, retried.created_at) == ("Pending", T0 + 700)


def agreement(result: str, pairs: int, detail: str = "") -> Verdict:
    """A verdict before the first step: only the shadow comparison speaks."""
    share = None if result == "inconclusive" else 0.95
    return Verdict((Check("prediction_agreement", share, 0.85, pairs, result, detail),))  # type: ignore[arg-type]


def shadowing(since: float, created: float = 30) -> RolloutState:
    return RolloutState(
        phase="Shadowing", shadow_started_at=T0 - since, created_at=T0 - since - created
    )


# a table: one case per line, read across
# fmt: off
SHADOWING = [
    # disagreement on the same requests rolls back, before any user saw the canary
    (shadowing(5), agreement("fail", 8, "agrees with stable on 0 of 8 pairs"), (), "rollback", "shadow comparison: agrees with stable on 0 of 8 pairs"),
    # enough pairs with no evidence against it: the first step
    (shadowing(60), agreement("pass", 200, "agrees on 190 of 200"), (), "start", "shadow comparison: agrees on 190 of 200; step 1"),
    # too few pairs: wait, up to maxDuration, then go on (low traffic is not evidence)
    (shadowing(60), agreement("pass", 37), (), "hold", "shadowing: 37 of 200 pairs (240s left of maxDuration 5m)"),
    (shadowing(301), agreement("pass", 37, "agrees on 37 of 37"), (), "start", "step 1"),
    # a comparator that says nothing is no data, never healthy
    (shadowing(400), agreement("inconclusive", 0, "no data from the shadow comparator"), (), "hold", "shadowing: waiting: no data from the shadow comparator"),
    # a holdOn alert (input drift) holds; a critical one (low agreement) rolls back
    (shadowing(301), agreement("pass", 250), (WARNING,), "hold", "shadowing: holding: alert ModelVersionTrafficBelowShare"),
    (shadowing(30), agreement("pass", 5), (CRITICAL,), "rollback", "alert ModelVersionHighErrorRatio (critical) fired"),
    # live inputs that drifted from stable's profile hold, even with enough pairs
    (shadowing(60), Verdict((Check("prediction_agreement", 0.95, 0.85, 250, "pass"), Check("input_drift", 0.4, 0.25, 900, "inconclusive", "live inputs drifted"))), (), "hold", "shadowing: holding: live inputs drifted"),
    # the deadline counts here too
    (shadowing(100, created=600), agreement("pass", 5), (), "rollback", "not promoted within progressDeadline 10m"),
]
# fmt: on


@pytest.mark.parametrize(("state", "v", "alerts", "action", "reason"), SHADOWING)
def test_shadowing(
    state: RolloutState, v: Verdict, alerts: tuple[FiringAlert, ...], action: str, reason: str
) -> None:
    decision = run(state, v, alerts)
    expected = SPEC.steps[0] if action == "start" else 0
    assert (decision.action, decision.weight) == (action, expected), decision.reason
    assert reason in decision.reason


def test_a_passed_gate_shadows_first_where_the_platform_mirrors() -> None:
    decision = decide(SPEC, RolloutState(), PASS, (), None, T0, GOLDEN_OK, NOT_WORSE, True)
    assert (decision.action, decision.weight) == ("shadow", 0)
    assert "shadowing 10% of stable's requests" in decision.reason
    state = apply(RolloutState(), decision, T0)
    assert (state.phase, state.shadow_started_at, state.step) == ("Shadowing", T0, -1)
    # without a comparator it starts, and says the comparison did not happen
    decision = decide(SPEC, RolloutState(), PASS, (), None, T0, GOLDEN_OK, NOT_WORSE, False)
    assert decision.action == "start" and "no shadow comparison here" in decision.reason
    # a person may skip the shadow: promote takes the first step
    promote = Intent("promote", by="ana")
    decision = decide(SPEC, state, PASS, (), promote, T0 + 1)
    assert (decision.action, decision.weight) == ("advance", 5)


UNREACHABLE = "Prometheus at http://127.0.0.1:9 is unreachable"


# a table: one case per line, read across
# fmt: off
COUNTERS_WAIT = [
    # the first step waits for a real observation of the versions' counters
    (RolloutState(created_at=T0 - 10), "hold", f"waiting for the counters before the first step ({UNREACHABLE}) (590s left of progressDeadline 10m)"),
    (shadowing(301), "hold", f"shadowing: waiting for the counters ({UNREACHABLE})"),
    # ... at most until progressDeadline
    (RolloutState(created_at=T0 - 601), "rollback", f"the counters were never read ({UNREACHABLE}) within progressDeadline 10m"),
]
# fmt: on


@pytest.mark.parametrize(("state", "action", "reason"), COUNTERS_WAIT)
def test_the_first_step_waits_for_both_versions_counters(
    state: RolloutState, action: str, reason: str
) -> None:
    """Issue 20 item 2: a first step taken while Prometheus was unreachable counted every
    request of a version's history from a baseline of zeros."""
    v = agreement("pass", 250, "agrees on 240 of 250") if state.phase == "Shadowing" else PASS
    decision = run(state, v, golden=GOLDEN_OK, counters=UNREACHABLE)
    assert (decision.action, decision.weight) == (action, 0), decision.reason
    assert reason in decision.reason
    assert run(state, v, golden=GOLDEN_OK).action in ("start", "rollback")


def test_the_shadow_phase_needs_no_counters() -> None:
    """No user traffic while shadowing: only the first step waits for the counters."""
    decision = decide(
        SPEC, RolloutState(), PASS, (), None, T0, GOLDEN_OK, NOT_WORSE, True, UNREACHABLE
    )
    assert (decision.action, decision.weight) == ("shadow", 0), decision.reason
