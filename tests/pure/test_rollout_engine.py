"""The engine's tick through in-memory ports: ordering of writes, restarts, intents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from modelcanary.adapters.alertmanager_notifier import NotifyError
from modelcanary.adapters.gateway_router import RouterError
from modelcanary.adapters.gateway_shadow import ShadowError
from modelcanary.adapters.repo_reader import CheckUnavailable
from modelcanary.errors import UsageError
from modelcanary.rollout.engine import Engine, Rollout, TickFailure, TickResult
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.ports import (
    Counts,
    FiringAlert,
    GateResult,
    GoldenResult,
    Observations,
    RolloutEvent,
    RolloutKey,
    ShadowCounts,
    VersionStats,
)
from modelcanary.rollout.spec import parse_spec
from modelcanary.rollout.state import RolloutState

SPEC = parse_spec(
    {
        "model": "digits",
        "stable": {"version": "1"},
        "canary": {"version": "2"},
        "steps": [10, 50, 100],
        "interval": "10s",
        "analysis": {"failureLimit": 0, "beforeFull": {"errorRatioAboveStable": None}},
    },
    "test",
)
HEALTHY = Observations(VersionStats(500, 0, 0.01), VersionStats(100, 0, 0.01))


class Killed(BaseException):
    """Stands in for SIGKILL between two writes."""


@dataclass
class MemoryStore:
    state: RolloutState | None = None
    intent: Intent | None = None
    saves: list[RolloutState] = field(default_factory=list)

    def load(self) -> RolloutState | None:
        return self.state

    def save(self, state: RolloutState) -> None:
        self.state = state
        self.saves.append(state)

    def read_intent(self) -> Intent | None:
        return self.intent

    def clear_intent(self, intent: Intent) -> None:
        if self.intent == intent:
            self.intent = None


@dataclass
class Router:
    calls: list[tuple[int, bool]] = field(default_factory=list)
    fail: BaseException | None = None

    def route(self, weight: int, promoted: bool) -> None:
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        self.calls.append((weight, promoted))


@dataclass
class Source:
    """Prometheus as the engine sees it: windowed stats, and cumulative counters that grow
    by the window's requests at every observation (healthy by default)."""

    seen: Observations = HEALTHY
    asked: list[list[RolloutKey]] = field(default_factory=list)

    def observe(self, rollouts: Sequence[RolloutKey]) -> dict[RolloutKey, Observations]:
        self.asked.append(list(rollouts))
        n = len(self.asked)
        seen = replace(
            self.seen, stable=grown(self.seen.stable, n), canary=grown(self.seen.canary, n)
        )
        return {key: seen for key in rollouts}


def grown(stats: VersionStats | None, times: int) -> VersionStats | None:
    """One replica whose counters grow by the window's requests at every observation."""
    if stats is None or stats.replicas is not None:
        return stats
    totals = Counts(stats.requests * times, stats.errors * times)
    return replace(stats, replicas={"10.0.0.1:8000": totals})


@dataclass
class Notifier:
    events: list[RolloutEvent] = field(default_factory=list)
    fail: bool = False

    def notify(self, event: RolloutEvent) -> None:
        if self.fail:
            raise NotifyError("Alertmanager at http://am is unreachable")
        self.events.append(event)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def golden_ok() -> GoldenResult:
    return GoldenResult(True, "32 samples, max abs err 1e-06")


def make(store: MemoryStore | None = None, router: Router | None = None, golden=golden_ok):  # type: ignore[no-untyped-def]
    return Rollout("digits", SPEC, store or MemoryStore(), router or Router(), golden)


def test_a_healthy_rollout_goes_through_every_step_and_notifies_once() -> None:
    source, notifier, clock = Source(), Notifier(), Clock()
    engine = Engine(source, notifier, clock=clock)
    rollout = make()
    actions = []
    for _ in range(8):
        result = engine.tick([rollout])[0]
        actions.append(result.decision.action if result.decision else None)
        clock.now += 11
    assert actions[:4] == ["start", "advance", "advance", "promote"]
    assert set(actions[4:]) == {"hold"}
    assert rollout.router.calls == [(10, False), (50, False), (100, False), (100, True)]  # type: ignore[attr-defined]
    assert [e.kind for e in notifier.events] == ["promoted"]
    state = rollout.store.load()
    assert state is not None and state.phase == "Promoted" and state.applied
    assert state.analysis is not None and state.analysis.result == "pass"


def test_weight_changes_are_persisted_before_and_after_the_router() -> None:
    store, router = MemoryStore(), Router()
    Engine(Source(), Notifier(), clock=Clock()).tick([make(store, router)])
    before, after = store.saves[-2:]
    assert (before.weight, before.applied) == (10, False)
    assert (after.weight, after.applied) == (10, True)


def test_a_controller_killed_mid_change_reapplies_the_step_without_skipping_or_repeating() -> None:
    store, clock, router = MemoryStore(), Clock(), Router()
    engine = Engine(Source(), Notifier(), clock=clock)
    engine.tick([make(store, router)])  # step 1 at 10%
    clock.now += 11
    router.fail = Killed()
    with pytest.raises(Killed):
        engine.tick([make(store, router)])
    assert store.state is not None and (store.state.step, store.state.applied) == (1, False)
    restarted = Router()
    result = Engine(Source(), Notifier(), clock=clock).tick([make(store, restarted)])[0]
    assert restarted.calls[0] == (50, False)  # the recorded step, applied again
    assert result.state.step == 1 and result.state.weight == 50 and result.state.applied
    assert [t.action for t in result.state.history] == ["start", "advance"]


def test_an_intent_is_acted_on_once_even_if_killed_before_it_is_cleared() -> None:
    store, clock = MemoryStore(), Clock()
    engine = Engine(Source(), Notifier(), clock=clock)
    engine.tick([make(store)])
    store.intent = Intent("promote", "looks fine", "ana", id="i-1")

    class ForgetfulStore(MemoryStore):
        def clear_intent(self, intent: Intent) -> None:
            raise Killed

    forgetful = ForgetfulStore(store.state, store.intent)
    with pytest.raises(Killed):
        engine.tick([make(forgetful)])
    assert forgetful.state is not None and forgetful.state.step == 1  # advanced once
    assert forgetful.state.history[-1].by == "ana"
    again = MemoryStore(forgetful.state, forgetful.intent)
    result = engine.tick([make(again)])[0]
    assert result.state.step == 1 and again.intent is None


def test_one_grouped_observation_serves_every_rollout() -> None:
    source = Source()
    other = SPEC.model_copy(update={"model": "cats"})
    rollouts = [make(), Rollout("cats", other, MemoryStore(), Router(), golden_ok)]
    Engine(source, Notifier(), clock=Clock()).tick(rollouts)
    assert len(source.asked) == 1 and len(source.asked[0]) == 2


def test_a_golden_mismatch_rolls_back_before_any_traffic() -> None:
    router, notifier = Router(), Notifier()
    rollout = make(
        router=router, golden=lambda: GoldenResult(False, "output 'logits' off by 3e-01")
    )
    result = Engine(Source(), notifier, clock=Clock()).tick([rollout])[0]
    # no traffic ever went to the canary; the router is told to keep everything on stable
    assert result.state.phase == "RolledBack" and router.calls == [(0, False)]
    assert "off by 3e-01" in notifier.events[0].reason


def test_an_unavailable_golden_check_holds_and_says_why() -> None:
    def unavailable() -> GoldenResult:
        raise CheckUnavailable("http://gw/v2/models/digits/versions/2/infer answered 404")

    result = Engine(Source(), Notifier(), clock=Clock()).tick([make(golden=unavailable)])[0]
    assert result.state.phase == "Pending"
    assert result.state.analysis is not None and "answered 404" in result.state.analysis.reason


WORSE = GateResult(
    "worse",
    "accuracy of 'logits' on 360 labelled samples: canary 0.7639 [0.7173, 0.8046], stable "
    "0.9806 [0.9604, 0.9905]; canary - stable -0.2169 [-0.2603, -0.1735] at 95%, margin 0.01: "
    "worse",
    {"holdout_canary": 0.7639, "holdout_stable": 0.9806, "holdout_samples": 360},
)


def test_a_canary_worse_on_the_holdout_is_rolled_back_before_any_traffic() -> None:
    store, router, notifier = MemoryStore(), Router(), Notifier()
    rollout = replace(make(store, router), gate=lambda: WORSE)
    result = Engine(Source(), notifier, clock=Clock()).tick([rollout])[0]
    assert result.state.phase == "RolledBack" and router.calls == [(0, False)]
    assert result.state.gate == WORSE and result.state.history[-1].numbers["holdout_samples"] == 360
    # on-call is told why, with the numbers
    event = notifier.events[0]
    assert "worse than stable on the holdout" in event.reason and "0.7639" in event.reason
    assert event.numbers["holdout_canary"] == 0.7639
    # and the verdict survives a round trip through JSON (a status, a state file)
    assert store.state is not None
    assert RolloutState.from_json(json.loads(json.dumps(store.state.to_json()))) == store.state


def test_the_gate_runs_only_once_the_golden_samples_match_on_a_ready_canary() -> None:
    asked: list[str] = []

    def gate() -> GateResult:
        asked.append("gate")
        return WORSE

    def mismatch() -> GoldenResult:
        return GoldenResult(False, "off")

    engine = Engine(Source(), Notifier(), clock=Clock())
    engine.tick([replace(make(golden=mismatch), gate=gate)])
    unready = replace(make(), gate=gate, readiness=lambda: False)
    engine.tick([unready])
    assert asked == []


def test_a_gate_that_cannot_run_holds_and_says_why() -> None:
    def unavailable() -> GateResult:
        raise CheckUnavailable("http://gw/v2/models/digits/versions/1/infer is unreachable")

    result = Engine(Source(), Notifier(), clock=Clock()).tick([replace(make(), gate=unavailable)])[
        0
    ]
    assert result.state.phase == "Pending" and result.state.analysis is not None
    assert "holdout gate: http://gw" in result.state.analysis.reason


def test_a_pushed_critical_alert_rolls_back_at_once() -> None:
    """Alertmanager's push can be ahead of the Prometheus the engine queries (a replica
    that still has the alert pending): the push makes it firing."""
    store, router, clock = MemoryStore(), Router(), Clock()
    Engine(Source(), Notifier(), clock=clock).tick([make(store, router)])
    alert = FiringAlert("ModelCanaryErrorRatioHigh", "critical", "2")
    pending = (replace(alert, state="pending"),)  # Prometheus has it, not yet firing
    busy = Observations(VersionStats(20_000, 0, 0.01), VersionStats(2000, 0, 0.01))
    engine = Engine(
        Source(replace(busy, alerts=pending)),
        Notifier(),
        pushed=lambda model: [alert] if model == "digits" else [],
        clock=clock,
    )
    result = engine.tick([make(store, router)])[0]
    assert result.state.phase == "RolledBack" and router.calls[-1] == (0, False)
    assert "ModelCanaryErrorRatioHigh" in result.state.history[-1].reason


def test_a_critical_alert_on_too_few_requests_holds_and_the_checks_decide() -> None:
    """Issue 20 item 5: at 1 req/s an error-ratio alert fired on 2 errors in ~150 canary
    requests and rolled a healthy canary back."""
    store, router, clock = MemoryStore(), Router(), Clock()
    Engine(Source(), Notifier(), clock=clock).tick([make(store, router)])
    alert = FiringAlert("ModelVersionHighErrorRatio", "critical", "2")
    firing = Source(replace(HEALTHY, alerts=(alert,)))  # Prometheus fires it: a real alert
    engine = Engine(firing, Notifier(), pushed=lambda model: [alert], clock=clock)
    clock.now += 10
    result = engine.tick([make(store, router)])[0]
    assert result.state.phase == "Progressing" and result.decision is not None
    assert "on 100 canary requests, too few to roll back on" in result.decision.reason


def test_a_stale_pushed_alert_does_not_roll_a_new_rollout_back() -> None:
    """Issue 13 defect 5: after an Alertmanager stall the book still held an alert that
    Prometheus had long resolved, and a new rollout was rolled back on its first tick. A
    pushed alert that began before the rollout counts only while Prometheus fires it too."""
    clock = Clock(now=5000.0)
    stale = FiringAlert("ModelVersionHighErrorRatio", "critical", "2", started_at=4000.0)
    engine = Engine(Source(), Notifier(), pushed=lambda model: [stale], clock=clock)
    result = engine.tick([make()])[0]
    assert result.state.phase == "Progressing", result.state.history[-1].reason
    assert result.state.analysis is not None and result.state.analysis.alerts == ()


def test_a_pushed_alert_that_prometheus_fires_rolls_back() -> None:
    clock = Clock(now=5000.0)
    pushed = FiringAlert("ModelVersionHighErrorRatio", "critical", "2", started_at=4000.0)
    source = Source(replace(HEALTHY, alerts=(FiringAlert(pushed.name, "critical", "2"),)))
    engine = Engine(source, Notifier(), pushed=lambda model: [pushed], clock=clock)
    result = engine.tick([make()])[0]
    assert result.state.phase == "RolledBack"
    assert "ModelVersionHighErrorRatio" in result.state.history[-1].reason


@pytest.mark.parametrize(
    "pushed",
    [
        FiringAlert("ModelVersionHighErrorRatio", "critical", "2", started_at=5000.0),
        FiringAlert("ModelVersionHighErrorRatio", "critical", "2", started_at=9e9),
        FiringAlert("AnythingAtAll", "critical", "2"),
    ],
    ids=["since-the-rollout", "future", "no-such-rule"],
)
def test_a_pushed_alert_that_prometheus_does_not_have_is_ignored(pushed: FiringAlert) -> None:
    """Issue 25 probe 3b: an alert posted to Alertmanager's API by anyone rolled a healthy
    canary back within a second; one dated in the future rolled back every later rollout
    of the version. Only the stack's rules make Prometheus fire an alert."""
    clock = Clock(now=5000.0)
    engine = Engine(Source(), Notifier(), pushed=lambda model: [pushed], clock=clock)
    result = engine.tick([make()])[0]
    assert result.state.phase == "Progressing", result.state.history[-1].reason
    assert result.state.analysis is not None and result.state.analysis.alerts == ()


def test_unreachable_prometheus_is_no_data_never_healthy() -> None:
    store, clock = MemoryStore(), Clock()
    source = Source()
    Engine(source, Notifier(), clock=clock).tick([make(store)])
    source.seen = Observations(None, None, problem="Prometheus at http://p is unreachable")
    for _ in range(3):
        clock.now += 11
        result = Engine(source, Notifier(), clock=clock).tick([make(store)])[0]
    assert result.state.step == 0 and result.state.phase == "Progressing"
    assert "unreachable" in result.problems[0]


def test_a_router_failure_keeps_the_change_pending_and_retries_it() -> None:
    store, clock = MemoryStore(), Clock()
    failing = Router(fail=RouterError("the gateway at http://gw is unreachable"))
    result = Engine(Source(), Notifier(), clock=clock).tick([make(store, failing)])[0]
    assert result.state.weight == 10 and not result.state.applied
    assert "router: the gateway" in result.problems[0]
    router = Router()
    result = Engine(Source(), Notifier(), clock=clock).tick([make(store, router)])[0]
    assert router.calls[0] == (10, False) and result.state.applied and result.state.step == 0


def test_a_notifier_failure_is_reported_not_fatal() -> None:
    rollout = make(golden=lambda: GoldenResult(False, "off"))
    result = Engine(Source(), Notifier(fail=True), clock=Clock()).tick([rollout])[0]
    assert result.state.phase == "RolledBack"
    assert result.problems == ("notify: Alertmanager at http://am is unreachable",)


def test_a_new_engine_reapplies_the_recorded_weight_once() -> None:
    """A gateway restarted while no controller ran gets the rollout's weight back."""
    store, clock = MemoryStore(), Clock()
    Engine(Source(), Notifier(), clock=clock).tick([make(store, Router())])
    router, engine = Router(), Engine(Source(), Notifier(), clock=clock)
    engine.tick([make(store, router)])
    engine.tick([make(store, router)])
    assert router.calls == [(10, False)]


def test_a_rollback_before_the_first_step_still_restores_stable() -> None:
    """Issue 12 defect 5: Pending -> RolledBack keeps weight 0, but the router must still be
    told (a KServe InferenceService may already carry the canary's model spec)."""
    store, router = MemoryStore(), Router()
    alert = FiringAlert("ModelVersionHighErrorRatio", "critical", "2")
    engine = Engine(Source(replace(HEALTHY, alerts=(alert,))), Notifier(), clock=Clock())
    result = engine.tick([make(store, router)])[0]
    assert result.state.phase == "RolledBack" and result.state.weight == 0
    assert router.calls == [(0, False)]


def test_the_state_reads_back_equal_without_the_nulls_a_server_drops_from_lists() -> None:
    """Issue 12 defect 2: a real API server drops `null` inside lists written by merge patch
    (an inconclusive check has value None); the state must read back equal regardless."""
    quiet = Source(Observations(stable=None, canary=None))  # no data: inconclusive checks
    store = MemoryStore()
    Engine(quiet, Notifier(), clock=Clock()).tick([make(store)])
    state = store.state
    assert state is not None and state.analysis is not None
    assert any(c.value is None for c in state.analysis.checks)

    def drop_nulls_in_lists(value: Any, in_list: bool = False) -> Any:
        if isinstance(value, dict):
            return {
                k: drop_nulls_in_lists(v, in_list)
                for k, v in value.items()
                if not (in_list and v is None)
            }
        if isinstance(value, list):
            return [drop_nulls_in_lists(v, True) for v in value]
        return value

    served = drop_nulls_in_lists(json.loads(json.dumps(state.to_json())))
    assert RolloutState.from_json(served) == state


def test_one_broken_rollout_does_not_stop_the_others() -> None:
    """At scale: an unreadable status or a conflict on one rollout fails that one alone."""

    class Unreadable(MemoryStore):
        def load(self) -> RolloutState | None:
            raise UsageError("status.state: not a readable rollout state")

    broken = Rollout("broken", SPEC, Unreadable(), Router(), golden_ok)
    results = Engine(Source(), Notifier(), clock=Clock()).tick_each([broken, make()])
    assert isinstance(results[0], TickFailure) and "not a readable" in results[0].problem
    assert isinstance(results[1], TickResult) and results[1].state.phase == "Progressing"


def test_with_a_heartbeat_a_tick_that_changes_nothing_saves_nothing() -> None:
    """The operator writes a status when something changed, or once per heartbeat."""
    store, clock = MemoryStore(), Clock()
    engine = Engine(Source(), Notifier(), clock=clock, heartbeat_s=30)
    rollout = make(store)
    engine.tick([rollout])  # start: saved
    clock.now += 1
    engine.tick([rollout])  # first verdict of the step: saved
    saves = len(store.saves)
    for _ in range(5):
        clock.now += 1
        engine.tick([rollout])  # holding at the step, only the numbers move
    assert len(store.saves) == saves
    clock.now += 30
    engine.tick([rollout])  # a step later (interval 10 s): saved at once
    assert len(store.saves) > saves and store.state is not None and store.state.step == 1


def test_a_budgeted_heartbeat_writes_only_the_statuses_saved_before_fresh_since() -> None:
    """The operator budgets heartbeat writes per tick (modelcanary.kube.heartbeat): with
    `fresh_since` set, a holding rollout saved after it is not written, one saved at or
    before it is, whatever `heartbeat_s` says; unset, `heartbeat_s` decides again."""
    stores, clock = [MemoryStore(), MemoryStore()], Clock()
    engine = Engine(Source(), Notifier(), clock=clock, heartbeat_s=30)
    rollouts = [make(store) for store in stores]
    for _ in range(2):  # start, then the step's first verdict: saved, the first one earlier
        for rollout in rollouts:
            engine.tick([rollout])
            clock.now += 0.5

    def writes() -> list[int]:
        return [len(store.saves) for store in stores]

    first = stores[0].state.analysis if stores[0].state else None
    assert first is not None
    before = writes()
    engine.fresh_since = first.at
    engine.tick(rollouts)  # holding; the first one's status is due, the second's is not
    assert [now - then for now, then in zip(writes(), before, strict=True)] == [1, 0]
    engine.fresh_since, before = None, writes()
    engine.tick(rollouts)
    assert writes() == before  # both written within heartbeat_s


def test_rollouts_ticked_on_a_pool_end_as_those_ticked_one_after_another() -> None:
    """The operator ticks its rollouts on threads (their writes overlap): every tick gives
    the same phases, steps and weights as ticking them in order."""
    runs = []
    with ThreadPoolExecutor(4) as threads:
        # in order; in 4 shares of 3; in 5 shares of 2 or 3 on 4 threads
        for pool, shares in ((None, 1), (threads, 4), (threads, 5)):
            clock = Clock()
            engine = Engine(Source(), Notifier(), clock=clock, heartbeat_s=30)
            rollouts = [
                Rollout(f"digits-{index}", SPEC, MemoryStore(), Router(), golden_ok)
                for index in range(12)
            ]
            ticks = []
            for _ in range(60):
                results = engine.tick_each(rollouts, pool, shares)
                ticks.append(
                    [
                        (r.rollout, r.state.phase, r.state.step, r.state.weight)
                        for r in results
                        if isinstance(r, TickResult)
                    ]
                )
                clock.now += 1
            runs.append(ticks)
    assert runs[0] == runs[1] == runs[2]
    assert {phase for _, phase, _, _ in runs[0][-1]} == {"Promoted"} and len(runs[0][-1]) == 12


def test_an_unreachable_prometheus_holds_the_step_whatever_the_evidence_so_far() -> None:
    """Issue 13 (found by the chaos tests): with Prometheus down past the step's interval,
    the rollout holds on "no data"; counts from before the outage promote nothing."""
    store, clock, source = MemoryStore(), Clock(), Source()
    engine = Engine(source, Notifier(), clock=clock)
    rollout = make(store)
    for _ in range(2):
        engine.tick([rollout])
        clock.now += 1
    assert store.state is not None and store.state.step == 0
    source.seen = Observations(None, None, problem="Prometheus at http://p is unreachable")
    clock.now += 60  # the step's interval (10 s) passes during the outage
    result = engine.tick([rollout])[0]
    assert result.state.step == 0 and result.decision is not None
    assert result.decision.action == "hold" and "no data" in result.decision.reason


@dataclass
class Mirror:
    calls: list[str] = field(default_factory=list)

    def start(self, percent: int) -> None:
        self.calls.append(f"start {percent}")

    def stop(self) -> None:
        self.calls.append("stop")


def test_a_label_bug_is_rolled_back_while_shadowing_with_no_user_traffic() -> None:
    router, mirror, clock = Router(), Mirror(), Clock()
    source = Source(replace(HEALTHY, shadow=ShadowCounts(40, 40, 40)))  # an earlier comparison
    engine = Engine(source, Notifier(), clock=clock)
    rollout = replace(make(router=router), shadow=mirror)
    first = engine.tick([rollout])[0]
    assert first.state.phase == "Shadowing" and mirror.calls == ["start 10"]
    assert first.state.weight == 0 and router.calls == []
    # the comparator restarted its counters for this comparison: 12 pairs, none agreeing
    source.seen = replace(HEALTHY, shadow=ShadowCounts(12, 0, 12))
    clock.now += 1
    result = engine.tick([rollout])[0]
    assert result.state.phase == "RolledBack", result.state.analysis
    assert "shadow comparison: the canary agrees with stable on 0 of 12 pairs" in (
        result.state.history[-1].reason
    )
    assert router.calls == [(0, False)] and mirror.calls == ["start 10", "stop"]


def test_an_agreeing_canary_goes_from_shadow_to_its_first_step_and_keeps_being_compared() -> None:
    mirror, clock = Mirror(), Clock()
    source = Source(replace(HEALTHY, shadow=ShadowCounts(0, 0, 0)))
    engine = Engine(source, Notifier(), clock=clock)
    rollout = replace(make(), shadow=mirror)
    engine.tick([rollout])
    source.seen = replace(HEALTHY, shadow=ShadowCounts(250, 240, 250))
    clock.now += 1
    started = engine.tick([rollout])[0].state
    assert (started.phase, started.weight) == ("Progressing", 10), started.history[-1].reason
    assert started.baseline is not None  # the judge counts requests from the first step on
    # during the steps the comparison goes on: disagreement now still rolls back
    source.seen = replace(HEALTHY, shadow=ShadowCounts(600, 250, 600))
    clock.now += 1
    checks = engine.tick([rollout])[0].state
    assert checks.phase == "RolledBack" and "prediction_agreement" in checks.history[-1].reason


def test_a_failed_shadow_start_is_retried_and_a_new_engine_starts_it_again() -> None:
    class Flaky(Mirror):
        def start(self, percent: int) -> None:
            if not self.calls:
                self.calls.append("refused")
                raise ShadowError("the gateway at http://gw/admin/shadow/digits is unreachable")
            super().start(percent)

    mirror, clock, store = Flaky(), Clock(), MemoryStore()
    source = Source(replace(HEALTHY, shadow=ShadowCounts(0, 0, 0)))
    rollout = replace(make(store), shadow=mirror)
    engine = Engine(source, Notifier(), clock=clock)
    first = engine.tick([rollout])[0]
    assert first.state.phase == "Shadowing" and "shadow: the gateway" in first.problems[0]
    clock.now += 1
    engine.tick([rollout])
    clock.now += 1
    engine.tick([rollout])
    assert mirror.calls == ["refused", "start 10"]  # once more, then never again
    Engine(source, Notifier(), clock=clock).tick([rollout])  # a restarted controller
    assert mirror.calls == ["refused", "start 10", "start 10"]


def test_the_first_step_waits_until_prometheus_gave_both_versions_counters() -> None:
    """Issue 20 item 2: a first step during an outage took zeros for a baseline, and the
    judge then counted stable's whole history."""
    store, clock = MemoryStore(), Clock()
    down = Source(Observations(None, None, problem="Prometheus at http://prom is unreachable"))
    result = Engine(down, Notifier(), clock=clock).tick([make(store)])[0]
    assert result.state.phase == "Pending" and result.state.baseline is None
    assert result.decision is not None
    assert "waiting for the counters before the first step (Prometheus at " in (
        result.decision.reason
    )
    clock.now += 10
    result = Engine(Source(), Notifier(), clock=clock).tick([make(store)])[0]
    assert result.state.phase == "Progressing" and result.state.baseline is not None
    (series,) = result.state.baseline.stable.series
    assert (series.name, series.last.requests) == ("10.0.0.1:8000", 500)


def test_at_most_moves_per_tick_rollouts_change_weight_in_a_tick_and_the_rest_follow() -> None:
    """Issue 26: a thousand rollouts advancing at once made one tick of three thousand
    writes; with a budget, a tick moves so many and the others move at the next ticks."""
    clock = Clock()
    engine = Engine(Source(), Notifier(), clock=clock)
    engine.moves_per_tick = 2
    rollouts = [Rollout(f"digits-{i}", SPEC, MemoryStore(), Router(), golden_ok) for i in range(5)]
    started = []
    for _ in range(3):
        results = engine.tick(rollouts)
        started.append(sum(r.state.weight == 10 for r in results))
        assert all(not r.problems for r in results)  # held, but nothing went wrong
        clock.now += 1
    assert started == [2, 4, 5]
    assert all(len(r.router.calls) == 1 for r in rollouts)  # type: ignore[attr-defined]
    assert all(len(r.store.state.history) == 1 for r in rollouts)  # type: ignore[attr-defined]


def test_a_rollback_is_never_held_by_the_budget_of_moves() -> None:
    store, router, clock = MemoryStore(), Router(), Clock()
    Engine(Source(), Notifier(), clock=clock).tick([make(store, router)])  # at step 1
    alert = FiringAlert("ModelVersionHighErrorRatio", "critical", "2")
    busy = Observations(VersionStats(20_000, 0, 0.01), VersionStats(2000, 0, 0.01))
    engine = Engine(Source(replace(busy, alerts=(alert,))), Notifier(), clock=clock)
    engine.moves_per_tick = 0
    result = engine.tick([make(store, router)])[0]
    assert result.state.phase == "RolledBack" and router.calls[-1] == (0, False)
