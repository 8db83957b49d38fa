"""The engine: one tick observes, judges, decides, routes, persists and notifies.

The same engine serves the local mode and the operator; only the ports differ:

- a metrics source observes every rollout at once (one grouped query per signal);
- pushed alerts (the Alertmanager webhook's book) wake the controller, and count only
  while Prometheus' `ALERTS` has them too, pending or firing: anyone who reaches
  Alertmanager can post an alert, only the stack's rules make Prometheus fire one (and a
  stalled Alertmanager may never have sent a resolution);
- a router applies a canary weight (the gateway locally, KServe in a cluster);
- a shadow control, where the platform has one, mirrors a share of stable's requests to
  the canary while the rollout shadows (and after, during the steps) and stops when it ends;
- a state store keeps each rollout's state and its pending operator intent;
- a notifier tells on-call about promotions, rollbacks and pauses.

A weight change is persisted before the router is called (with `applied=False`) and after
(`applied=True`). A controller killed in between finds `applied=False` on restart and
applies the recorded weight again, which is idempotent: no step is skipped or repeated.
An engine also applies each rollout's recorded weight once when it first sees it, so a
router that restarted meanwhile (a new gateway, a re-applied manifest) gets it back.
An intent is acted on and recorded as handled in the same write, and only then removed,
so a restart never acts on it twice. A store that cannot write (`StateNotSaved`) does not
stop the engine: a rollback is routed without its record (stable is safe to send users to
unrecorded), any other move waits until it can be recorded, and the problem is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

from modelcanary.errors import ModelcanaryError
from modelcanary.rollout.evidence import advance, open_ledger, shadow_since, unread, watch
from modelcanary.rollout.intents import FINISHED
from modelcanary.rollout.judge import Verdict, judge
from modelcanary.rollout.ports import (
    Clock,
    EventKind,
    FiringAlert,
    GateResult,
    GoldenCheck,
    HoldoutGate,
    MetricsSource,
    Notifier,
    Observations,
    Readiness,
    RolloutEvent,
    RolloutKey,
    Router,
    ShadowControl,
    ShadowCounts,
    StateNotSaved,
    StateStore,
)
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import LastAnalysis, RolloutState
from modelcanary.rollout.stepper import Decision, apply, decide

EVENTS: dict[str, EventKind] = {
    "promote": "promoted",
    "rollback": "rolled_back",
    "pause": "paused",
}


@dataclass(frozen=True)
class Rollout:
    """One rollout and the ports that act on it."""

    name: str
    spec: RolloutSpec
    store: StateStore
    router: Router
    golden: GoldenCheck
    readiness: Readiness | None = None
    gate: HoldoutGate = lambda: GateResult("not checked", "no holdout gate for this rollout")
    shadow: ShadowControl | None = None  # None: this platform mirrors nothing

    @property
    def key(self) -> RolloutKey:
        return RolloutKey(self.spec.model, self.spec.stable.version, self.spec.canary.version)


@dataclass(frozen=True)
class TickResult:
    rollout: str
    state: RolloutState
    decision: Decision | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class TickFailure:
    """A rollout whose tick could not run, and why."""

    rollout: str
    problem: str


class Engine:
    """Drives every rollout one tick at a time."""

    def __init__(
        self,
        source: MetricsSource,
        notifier: Notifier,
        pushed: Callable[[str], Sequence[FiringAlert]] = lambda model: (),
        clock: Clock = time.time,
        heartbeat_s: float = 0.0,
    ) -> None:
        """`heartbeat_s` > 0: a tick that changes nothing but the latest numbers saves the
        state only when the last save is that old (a status write per rollout per tick
        costs an API server much at scale); 0 saves on every tick."""
        self.source = source
        self.notifier = notifier
        self.pushed = pushed
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        # a caller that budgets the heartbeat writes sets it before a tick: the states
        # saved after it need none (None: those saved within heartbeat_s)
        self.fresh_since: float | None = None
        self._synced: set[str] = set()  # rollouts whose recorded weight this engine applied
        self._mirroring: set[str] = set()  # rollouts whose shadow this engine started
        self._verdicts: dict[str, tuple[tuple[object, ...], Verdict]] = {}  # by rollout

    def tick(self, rollouts: Sequence[Rollout]) -> list[TickResult]:
        seen = self.source.observe([r.key for r in rollouts])
        return [self._tick(r, seen[r.key]) for r in rollouts]

    def tick_each(
        self, rollouts: Sequence[Rollout], pool: Executor | None = None
    ) -> list[TickResult | TickFailure]:
        """`tick`, but a rollout whose tick fails (an unreadable status, a conflict) gives a
        failure and the others still tick: for a controller of many rollouts. With POOL,
        the rollouts tick concurrently on its threads (their writes overlap)."""
        seen = self.source.observe([r.key for r in rollouts])

        def each(rollout: Rollout) -> TickResult | TickFailure:
            try:
                return self._tick(rollout, seen[rollout.key])
            except ModelcanaryError as exc:
                return TickFailure(rollout.name, str(exc))

        return list(map(each, rollouts) if pool is None else pool.map(each, rollouts))

    def _mirror(self, rollout: Rollout) -> list[str]:
        """Start the rollout's shadow comparison unless this engine already has."""
        if rollout.name in self._mirroring:
            return []
        problems = _shadow(rollout, start=True)
        if not problems:
            self._mirroring.add(rollout.name)
        return problems

    def _judge(self, name: str, given: tuple[Any, ...]) -> Verdict:
        """The judge's verdict on GIVEN (its arguments), judged again only when they
        changed: the counts move once per rule evaluation, and ticks come more often."""
        known = self._verdicts.get(name)
        if known is not None and known[0] == given:
            return known[1]
        verdict = judge(*given)
        self._verdicts[name] = (given, verdict)
        return verdict

    def _unchanged(self, old: RolloutState, new: RolloutState, now: float) -> bool:
        """Nothing but the latest numbers changed, and they were saved recently enough."""
        if self.heartbeat_s <= 0 or old.analysis is None or new.analysis is None:
            return False
        if new.analysis.result != old.analysis.result:
            return False
        if (new.baseline is None) != (old.baseline is None):
            return False
        fresh = now - self.heartbeat_s if self.fresh_since is None else self.fresh_since
        return _settled(old) == _settled(new) and old.analysis.at > fresh

    def _tick(self, rollout: Rollout, seen: Observations) -> TickResult:
        store, spec = rollout.store, rollout.spec
        state = store.load() or RolloutState()
        problems: list[str] = []
        resync = rollout.name not in self._synced and state.phase != "Pending"
        if not state.applied or resync:  # killed mid-change, or first sight of this rollout
            try:
                rollout.router.route(state.weight, state.phase == "Promoted")
            except ModelcanaryError as exc:
                return TickResult(rollout.name, state, None, (f"router: {exc}",))
            if not state.applied:
                state = replace(state, applied=True)
                problems += _save(store, state)
        self._synced.add(rollout.name)
        shadowing = _mirrors(spec, state) and state.phase not in FINISHED
        if shadowing:
            problems += self._mirror(rollout)  # first sight, or an earlier start that failed

        intent = store.read_intent()
        if intent is not None and intent.id and intent.id == state.handled_intent:
            store.clear_intent(intent)  # acted on before a restart
            intent = None

        alerts = _merge(seen.alerts, _confirmed(self.pushed(spec.model), seen.alerts))
        seen = replace(seen, alerts=alerts)
        if rollout.readiness is not None:
            try:
                seen = replace(seen, canary_ready=rollout.readiness())
            except ModelcanaryError as exc:
                problems.append(f"readiness: {exc}")
                seen = replace(seen, canary_ready=False)
        if seen.problem:
            problems.append(seen.problem)
        now = self.clock()
        counters = unread(seen)  # why the counters cannot open a ledger now
        baseline, evidence = state.baseline, None
        if state.step < 0:
            baseline = baseline if seen.problem else watch(baseline, seen, now)
        elif baseline is None and counters is None:
            baseline = open_ledger(None, seen, now)  # a step taken unread, or an old state
        elif baseline is not None and not seen.problem:  # an outage moves no mark
            baseline, evidence = advance(baseline, seen, now)
        shadow_base, shadow = state.shadow_baseline, None
        if shadow_base is not None and seen.shadow is not None and not seen.problem:
            shadow, shadow_base = shadow_since(shadow_base, seen.shadow)
        verdict = self._judge(rollout.name, (spec, seen, evidence, state.weight,
                                             shadow if shadowing else "off"))  # fmt: skip
        golden, gate = None, None
        if state.phase == "Pending" and intent is None:
            try:
                golden = rollout.golden()
            except ModelcanaryError as exc:
                problems.append(f"golden-sample check: {exc}")
            if golden is not None and golden.passed and seen.canary_ready:
                try:  # once the canary is shown to serve what PyTorch said
                    gate = (
                        rollout.gate() if spec.analysis.holdout.enabled
                        else GateResult("not checked", "the gate is off in the spec")
                    )  # fmt: skip
                except ModelcanaryError as exc:
                    problems.append(f"holdout gate: {exc}")

        available = rollout.shadow is not None
        decision = decide(
            spec, state, verdict, alerts, intent, now, golden, gate, available, counters
        )  # fmt: skip
        new = apply(state, decision, now)
        if golden is not None:
            new = replace(new, golden=golden, gate=gate or new.gate)
        if state.step < 0 <= new.step:  # the first step: every request from here on counts once
            opened = open_ledger(baseline, seen, now) if counters is None else None
            new = replace(new, baseline=opened)
        elif decision.action != "restart":  # a new attempt watches its counters anew
            new = replace(new, baseline=baseline)
        if decision.action == "shadow":
            new = replace(new, shadow_baseline=seen.shadow or ShadowCounts(0.0, 0.0, 0.0))
            problems += self._mirror(rollout)
        elif new.shadow_baseline is not None and new.phase != "Pending":
            new = replace(new, shadow_baseline=shadow_base)
        if new.phase in FINISHED and state.phase not in FINISHED and _mirrors(spec, state):
            self._mirroring.discard(rollout.name)
            problems += _shadow(rollout, start=False)
        reason = decision.reason + "".join(f"; {p}" for p in problems)
        new = replace(
            new,
            analysis=LastAnalysis(now, verdict.result, verdict.checks, alerts, reason),
            handled_intent=intent.id if intent is not None and intent.id else state.handled_intent,
        )
        promoted = new.phase == "Promoted"
        # a rollback restores stable even from 0% (before the first step, a KServe
        # InferenceService already serves the canary's model spec)
        rolled_back = new.phase == "RolledBack" and state.phase != "RolledBack"
        if new.weight != state.weight or promoted != (state.phase == "Promoted") or rolled_back:
            unsaved = _save(store, replace(new, applied=False))
            if unsaved and not rolled_back:  # a restart would not know of the move: wait
                held = (*problems, *unsaved, f"holding at {state.weight}% until it is written")
                return TickResult(rollout.name, state, None, held)
            problems += unsaved
            try:
                rollout.router.route(new.weight, promoted)
            except ModelcanaryError as exc:
                problems.append(f"router: {exc}")
                if intent is not None:
                    store.clear_intent(intent)
                return TickResult(
                    rollout.name, replace(new, applied=False), decision, tuple(problems)
                )
        if not self._unchanged(state, new, now):
            problems += _save(store, new)
        if intent is not None:
            store.clear_intent(intent)
        kind = EVENTS.get(decision.action)
        if kind is not None:
            try:
                self.notifier.notify(_event(kind, rollout, decision))
            except ModelcanaryError as exc:
                problems.append(f"notify: {exc}")
        return TickResult(rollout.name, new, decision, tuple(problems))


def _save(store: StateStore, state: RolloutState) -> list[str]:
    """Save the state; a store that cannot write is a problem to report, not a crash."""
    try:
        store.save(state)
    except StateNotSaved as exc:
        return [f"state: {exc}"]
    return []


def _settled(state: RolloutState) -> RolloutState:
    """The state without what changes on every tick while nothing happens."""
    return replace(state, analysis=None, last_data_at=None, baseline=None, shadow_baseline=None)


def _mirrors(spec: RolloutSpec, state: RolloutState) -> bool:
    """The rollout began a shadow comparison, so its canary gets mirrored requests."""
    return spec.shadow.enabled and state.shadow_started_at is not None


def _shadow(rollout: Rollout, start: bool) -> list[str]:
    """Start or stop mirroring; a failure is a problem to report, not a crash."""
    if rollout.shadow is None:
        return []
    try:
        if start:
            rollout.shadow.start(rollout.spec.shadow.percent)
        else:
            rollout.shadow.stop()
    except ModelcanaryError as exc:
        return [f"shadow: {exc}"]
    return []


def _confirmed(
    pushed: Sequence[FiringAlert], prometheus: tuple[FiringAlert, ...]
) -> tuple[FiringAlert, ...]:
    """The pushed alerts that Prometheus has too (a replica it is not queried on may
    already fire what the queried one still has pending)."""
    known = {(a.name, a.severity, a.version) for a in prometheus}
    return tuple(a for a in pushed if (a.name, a.severity, a.version) in known)


def _merge(*groups: tuple[FiringAlert, ...]) -> tuple[FiringAlert, ...]:
    """Alerts from every source, once each; firing wins over pending."""
    merged: dict[tuple[str, str, str], FiringAlert] = {}
    for group in groups:
        for alert in group:
            key = (alert.name, alert.severity, alert.version)
            if key not in merged or alert.state == "firing":
                merged[key] = alert
    return tuple(merged.values())


def _event(kind: EventKind, rollout: Rollout, decision: Decision) -> RolloutEvent:
    spec = rollout.spec
    return RolloutEvent(
        kind=kind,
        rollout=rollout.name,
        model=spec.model,
        stable=spec.stable.version,
        canary=spec.canary.version,
        reason=decision.reason,
        numbers=dict(decision.numbers),
    )
