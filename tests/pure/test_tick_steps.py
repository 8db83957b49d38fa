"""The engine's tick one step at a time, through the in-memory ports: resync, observe,
judge, decide, act (mirror, route), record, notify. Each step is called alone, on the
state and the values the step before would hand it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from modelcanary.adapters.gateway_router import RouterError
from modelcanary.adapters.repo_reader import CheckUnavailable
from modelcanary.rollout.decision import Decision
from modelcanary.rollout.engine import Engine, Rollout, TickResult
from modelcanary.rollout.evidence import open_ledger
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.judge import judge
from modelcanary.rollout.ports import (
    Counts,
    FiringAlert,
    GateResult,
    GoldenResult,
    Observations,
    ShadowCounts,
    StateNotSaved,
)
from modelcanary.rollout.state import RolloutState
from modelcanary.rollout.tick import Judged, Observed, analysed, next_state
from tests.pure.test_rollout_engine import (
    HEALTHY,
    SPEC,
    Clock,
    MemoryStore,
    Mirror,
    Notifier,
    Router,
    Source,
    make,
)

NOW = 1000.0
COUNTED = replace(  # Prometheus' answer with each version's cumulative counters
    HEALTHY,
    stable=replace(HEALTHY.stable, replicas={"s": Counts(5000.0, 0.0)}),
    canary=replace(HEALTHY.canary, replicas={"c": Counts(1000.0, 0.0)}),
)
AT_STEP_1 = RolloutState(
    phase="Progressing",
    step=0,
    weight=10,
    started_at=NOW - 20,
    step_started_at=NOW - 20,
    created_at=NOW - 30,
    baseline=open_ledger(None, COUNTED, NOW - 20),
)
GOLDEN, NOT_WORSE = GoldenResult(True, "max abs err 0"), GateResult("not worse", "not worse")
CRITICAL = FiringAlert("ModelVersionHighErrorRatio", "critical", "2")


@dataclass
class FullStore(MemoryStore):
    """A store whose disk is full: nothing it is asked to save is written."""

    refused: list[RolloutState] = field(default_factory=list)

    def save(self, state: RolloutState) -> None:
        self.refused.append(state)
        raise StateNotSaved("/var/lib/modelcanary/digits.json: no space left on device")


@dataclass
class Journal(MemoryStore):
    """A store and a router writing to one journal, in the order they were asked."""

    journal: list[str] = field(default_factory=list)

    def save(self, state: RolloutState) -> None:
        super().save(state)
        self.journal.append(f"save {state.weight}% applied={state.applied}")

    def clear_intent(self, intent: Intent) -> None:
        super().clear_intent(intent)
        self.journal.append(f"clear {intent.id}")

    def route(self, weight: int, promoted: bool) -> None:
        self.journal.append(f"route {weight}%")


def engine(clock: Clock | None = None, notifier: Notifier | None = None, **kw: object) -> Engine:
    return Engine(Source(), notifier or Notifier(), clock=clock or Clock(NOW), **kw)  # type: ignore[arg-type]


def observed(seen: Observations = COUNTED, intent: Intent | None = None) -> Observed:
    """What `observe` hands on when nothing was in the way."""
    return Observed(seen, intent, NOW, None, None, None, None, None)


# resync


def test_resync_applies_a_weight_never_confirmed_and_saves_it_applied() -> None:
    store, router = MemoryStore(), Router()
    unconfirmed = replace(AT_STEP_1, applied=False)
    state, problems = engine().resync(make(store, router), unconfirmed)  # type: ignore[misc]
    assert router.calls == [(10, False)] and problems == []
    assert state.applied and store.saves == [state]


def test_resync_applies_the_recorded_weight_once_per_engine_and_never_before_the_start() -> None:
    router, steps = Router(), engine()
    rollout = make(router=router)
    steps.resync(rollout, AT_STEP_1)
    steps.resync(rollout, AT_STEP_1)
    assert router.calls == [(10, False)]
    pending = Router()
    engine().resync(make(router=pending), RolloutState())
    assert pending.calls == []


def test_a_router_that_fails_to_resync_ends_the_tick_with_the_state_as_it_was() -> None:
    store = MemoryStore()
    router = Router(fail=RouterError("the gateway at http://gw is unreachable"))
    ended = engine().resync(make(store, router), replace(AT_STEP_1, applied=False))
    assert isinstance(ended, TickResult) and ended.decision is None
    assert ended.problems == ("router: the gateway at http://gw is unreachable",)
    assert not ended.state.applied and store.saves == []


def test_resync_mirrors_again_for_a_rollout_that_compares() -> None:
    mirror = Mirror()
    compared = replace(AT_STEP_1, shadow_started_at=NOW - 60)
    steps = engine()
    steps.resync(replace(make(), shadow=mirror), compared)
    steps.resync(replace(make(), shadow=mirror), compared)
    assert mirror.calls == ["start 10"]


# observe


def test_observe_drops_an_intent_acted_on_before_a_restart_and_keeps_a_new_one() -> None:
    done, new = Intent("promote", by="ana", id="i-1"), Intent("pause", by="bo", id="i-2")
    store = MemoryStore(intent=done)
    seen = engine().observe(make(store), replace(AT_STEP_1, handled_intent="i-1"), COUNTED)
    assert seen.intent is None and store.intent is None
    store.intent = new
    seen = engine().observe(make(store), replace(AT_STEP_1, handled_intent="i-1"), COUNTED)
    assert seen.intent == new and store.intent == new  # cleared once acted on, not before


def test_observe_counts_a_pushed_alert_only_when_prometheus_has_it_and_firing_wins() -> None:
    pending = replace(CRITICAL, state="pending")
    stale = FiringAlert("ModelVersionSlow", "critical", "2")
    steps = engine(pushed=lambda model: [CRITICAL, stale])
    seen = steps.observe(make(), AT_STEP_1, replace(COUNTED, alerts=(pending,)))
    assert seen.seen.alerts == (CRITICAL,)


def test_observe_takes_a_readiness_that_cannot_be_read_as_not_ready() -> None:
    def unreadable() -> bool:
        raise CheckUnavailable("http://gw/v2/models/digits/versions/2/ready is unreachable")

    seen = engine().observe(replace(make(), readiness=unreadable), AT_STEP_1, COUNTED)
    assert not seen.seen.canary_ready
    assert seen.problems == (
        "readiness: http://gw/v2/models/digits/versions/2/ready is unreachable",
    )


def test_observe_counts_evidence_from_the_first_step_and_an_outage_moves_no_mark() -> None:
    grown = replace(
        COUNTED,
        stable=replace(COUNTED.stable, replicas={"s": Counts(5600.0, 0.0)}),
        canary=replace(COUNTED.canary, replicas={"c": Counts(1080.0, 4.0)}),
    )
    seen = engine().observe(make(), AT_STEP_1, grown)
    assert seen.now == NOW and seen.counters is None and seen.evidence is not None
    assert (seen.evidence.stable.requests, seen.evidence.canary.requests) == (600.0, 80.0)
    assert seen.evidence.canary.errors == 4.0
    down = Observations(None, None, problem="Prometheus at http://prom is unreachable")
    outage = engine().observe(make(), AT_STEP_1, down)
    assert outage.evidence is None and outage.baseline == AT_STEP_1.baseline
    assert outage.counters == "Prometheus at http://prom is unreachable"
    assert outage.problems == ("Prometheus at http://prom is unreachable",)


def test_observe_before_the_first_step_watches_the_counters_and_counts_nothing() -> None:
    seen = engine().observe(make(), RolloutState(), COUNTED)
    assert seen.evidence is None and seen.baseline is not None
    assert [s.last.requests for s in seen.baseline.stable.series] == [5000.0]
    down = Observations(None, None, problem="Prometheus at http://prom is unreachable")
    outage = engine().observe(make(), replace(RolloutState(), baseline=seen.baseline), down)
    assert outage.baseline == seen.baseline


# judge


def test_judge_runs_the_checks_before_traffic_only_while_pending_with_no_intent() -> None:
    asked: list[str] = []

    def golden() -> GoldenResult:
        asked.append("golden")
        return GOLDEN

    def gate() -> GateResult:
        asked.append("gate")
        return NOT_WORSE

    rollout = replace(make(golden=golden), gate=gate)
    judged = engine().judge(rollout, RolloutState(), observed())
    assert asked == ["golden", "gate"] and judged.gate is not None
    assert judged.verdict == judge(SPEC, COUNTED, None, 0, "off")
    engine().judge(rollout, RolloutState(), observed(intent=Intent("pause")))
    engine().judge(rollout, AT_STEP_1, observed())
    assert asked == ["golden", "gate"]


def test_judge_asks_no_gate_of_a_canary_not_shown_to_serve_what_pytorch_said() -> None:
    def unavailable() -> GoldenResult:
        raise CheckUnavailable("http://gw/v2/models/digits/versions/2/infer answered 404")

    judged = engine().judge(make(golden=unavailable), RolloutState(), observed())
    assert (judged.golden, judged.gate) == (None, None)
    assert judged.problems == (
        "golden-sample check: http://gw/v2/models/digits/versions/2/infer answered 404",
    )
    unready = engine().judge(make(), RolloutState(), observed(replace(COUNTED, canary_ready=False)))
    assert unready.golden is not None and unready.gate is None


# decide


def test_decide_opens_the_ledger_at_the_first_step_and_keeps_the_checks() -> None:
    seen = replace(observed(), baseline=engine().observe(make(), RolloutState(), COUNTED).baseline)
    decision, new = next_state(
        SPEC, RolloutState(), seen, Judged(judge(SPEC, COUNTED), GOLDEN, NOT_WORSE), False
    )
    assert (decision.action, new.phase, new.weight) == ("start", "Progressing", 10)
    assert (new.golden, new.gate) == (GOLDEN, NOT_WORSE)
    assert new.baseline == open_ledger(seen.baseline, COUNTED, NOW)


def test_decide_holds_the_first_step_until_the_counters_are_read() -> None:
    unread = replace(observed(HEALTHY), counters="no stable counters in Prometheus yet")
    decision, new = next_state(
        SPEC, RolloutState(), unread, Judged(judge(SPEC, HEALTHY), GOLDEN, NOT_WORSE), False
    )
    assert decision.action == "hold" and "waiting for the counters" in decision.reason
    assert new.phase == "Pending" and new.baseline is None


def test_decide_to_shadow_keeps_the_comparators_counters_as_its_baseline() -> None:
    spec = SPEC.model_copy(update={"shadow": SPEC.shadow.model_copy(update={"enabled": True})})
    seen = observed(replace(COUNTED, shadow=ShadowCounts(40.0, 38.0, 40.0)))
    decision, new = next_state(
        spec, RolloutState(), seen, Judged(judge(spec, COUNTED), GOLDEN, NOT_WORSE), True
    )
    assert (decision.action, new.phase) == ("shadow", "Shadowing")
    assert new.shadow_baseline == ShadowCounts(40.0, 38.0, 40.0)


# act: the mirror, the analysis, the router


def test_the_mirror_starts_when_the_rollout_shadows_and_stops_when_it_ends() -> None:
    spec = SPEC.model_copy(update={"shadow": SPEC.shadow.model_copy(update={"enabled": True})})
    mirror, steps = Mirror(), engine()
    rollout = Rollout(
        "digits", spec, MemoryStore(), Router(), lambda: GoldenResult(True, ""), shadow=mirror
    )
    shadowing = RolloutState(phase="Shadowing", shadow_started_at=NOW)
    assert steps.mirror(rollout, RolloutState(), shadowing, hold("shadow")) == []
    assert steps.mirror(rollout, shadowing, shadowing, hold()) == []
    rolled_back = replace(shadowing, phase="RolledBack")
    assert steps.mirror(rollout, shadowing, rolled_back, hold("rollback")) == []
    assert mirror.calls == ["start 10", "stop"]


def test_the_analysis_says_what_was_decided_with_every_problem_met() -> None:
    intent = Intent("promote", by="ana", id="i-7")
    seen = observed(replace(COUNTED, alerts=(CRITICAL,)), intent)
    verdict = judge(SPEC, COUNTED)
    new = analysed(AT_STEP_1, AT_STEP_1, hold(), seen, verdict, ["readiness: x", "notify: y"])
    assert new.analysis is not None and new.handled_intent == "i-7"
    assert new.analysis.reason == "holding; readiness: x; notify: y"
    assert (new.analysis.at, new.analysis.alerts) == (NOW, (CRITICAL,))
    assert new.analysis.checks == verdict.checks


def test_a_move_is_saved_unconfirmed_before_the_router_applies_it() -> None:
    journal = Journal()
    rollout = replace(make(journal), router=journal)
    moved = replace(AT_STEP_1, step=1, weight=50)
    assert engine().route(rollout, AT_STEP_1, moved, hold(), None, []) == []
    assert journal.journal == ["save 50% applied=False", "route 50%"]
    assert engine().route(rollout, AT_STEP_1, AT_STEP_1, hold(), None, []) == []
    assert len(journal.journal) == 2  # no move: nothing to route


def test_a_rollback_before_the_first_step_is_routed_though_the_weight_stays_at_0() -> None:
    """A KServe InferenceService may already serve the canary's model spec."""
    journal = Journal()
    rolled_back = RolloutState(phase="RolledBack")
    assert (
        engine().route(
            replace(make(journal), router=journal),
            RolloutState(),
            rolled_back,
            hold("rollback"),
            None,
            [],
        )
        == []
    )
    assert journal.journal == ["save 0% applied=False", "route 0%"]


def test_a_move_that_cannot_be_saved_waits_but_a_rollback_goes_ahead() -> None:
    store, router = FullStore(), Router()
    moved = replace(AT_STEP_1, step=1, weight=50)
    held = engine().route(make(store, router), AT_STEP_1, moved, hold(), None, ["earlier"])
    assert isinstance(held, TickResult) and held.state == AT_STEP_1 and router.calls == []
    assert (
        held.problems[0] == "earlier" and held.problems[-1] == "holding at 10% until it is written"
    )
    rolled_back = replace(AT_STEP_1, phase="RolledBack", weight=0)
    unsaved = engine().route(make(store, router), AT_STEP_1, rolled_back, hold(), None, [])
    assert router.calls == [(0, False)] and unsaved == [
        "state: /var/lib/modelcanary/digits.json: no space left on device"
    ]


def test_a_router_failure_ends_the_tick_unconfirmed_and_clears_the_intent() -> None:
    intent = Intent("promote", by="ana", id="i-3")
    store = MemoryStore(intent=intent)
    router = Router(fail=RouterError("the gateway at http://gw is unreachable"))
    moved = replace(AT_STEP_1, step=1, weight=50)
    ended = engine().route(make(store, router), AT_STEP_1, moved, hold("advance"), intent, [])
    assert isinstance(ended, TickResult) and ended.decision == hold("advance")
    assert (ended.state.weight, ended.state.applied) == (50, False)
    assert ended.problems == ("router: the gateway at http://gw is unreachable",)
    assert store.intent is None


# record, notify


def test_record_saves_then_clears_the_intent_acted_on() -> None:
    intent = Intent("pause", by="ana", id="i-4")
    journal = Journal(intent=intent)
    assert engine().record(journal, AT_STEP_1, AT_STEP_1, observed(intent=intent)) == []
    assert journal.journal == ["save 10% applied=True", "clear i-4"]
    assert journal.state == AT_STEP_1 and journal.intent is None


def test_record_with_a_heartbeat_skips_a_save_that_changes_only_the_numbers() -> None:
    store, verdict = MemoryStore(), judge(SPEC, COUNTED)
    saved = analysed(AT_STEP_1, AT_STEP_1, hold(), observed(), verdict, [])
    later = replace(observed(), now=NOW + 5)
    again = analysed(replace(saved, last_data_at=NOW + 5), saved, hold(), later, verdict, [])
    steps = engine(heartbeat_s=30.0)
    assert steps.record(store, saved, again, later) == [] and store.saves == []
    late = replace(observed(), now=NOW + 31)
    assert steps.record(store, saved, again, late) == [] and store.saves == [again]


def test_notify_tells_on_call_of_promotions_rollbacks_and_pauses_only() -> None:
    notifier = Notifier()
    steps = engine(notifier=notifier)
    assert steps.notify(make(), hold()) == []
    assert steps.notify(make(), hold("rollback")) == []
    assert [(e.kind, e.rollout, e.reason) for e in notifier.events] == [
        ("rolled_back", "digits", "holding")
    ]
    failing = engine(notifier=Notifier(fail=True))
    assert failing.notify(make(), hold("promote")) == [
        "notify: Alertmanager at http://am is unreachable"
    ]


def hold(action: str = "hold") -> Decision:
    """A decision as the stepper gives it; only the action matters to the steps after."""
    return Decision(action, 0, 10, "holding", 0, NOW)  # type: ignore[arg-type]
