"""The engine: a tick runs each rollout through its steps, one method each, in order:
resync, observe, judge, decide, act (the mirror, then the router), record and notify
(`Engine._tick` is that list; `tick.py` has the values passed between them).

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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from itertools import count

from modelcanary.errors import ModelcanaryError
from modelcanary.rollout.decision import Decision
from modelcanary.rollout.evidence import unread
from modelcanary.rollout.intents import FINISHED, Intent
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
    RolloutKey,
    Router,
    ShadowControl,
    StateNotSaved,
    StateStore,
)
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import RolloutState
from modelcanary.rollout.tick import (
    Judged,
    JudgeInput,
    Observed,
    ShadowInput,
    analysed,
    compares,
    event,
    evidence_now,
    mirrors,
    next_state,
    seen_alerts,
    settled,
    shadow_pairs,
)

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


Resynced = tuple[RolloutState, list[str]]  # the state as applied, and the problems met


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
        # and at most so many weight changes (advances, promotions) per tick, each three
        # writes: the others hold until a later tick, so that a tick stays short while a
        # thousand rollouts advance at once (None: no limit). Rollbacks and intents are
        # never held.
        self.moves_per_tick: int | None = None
        self._moves: Iterator[int] = count()  # this tick's slots (_open_moves)
        self._synced: set[str] = set()  # rollouts whose recorded weight this engine applied
        self._mirroring: set[str] = set()  # rollouts whose shadow this engine started
        self._verdicts: dict[str, tuple[JudgeInput, Verdict]] = {}  # by rollout

    def tick(self, rollouts: Sequence[Rollout]) -> list[TickResult]:
        self._open_moves()
        seen = self.source.observe([r.key for r in rollouts])
        return [self._tick(r, seen[r.key]) for r in rollouts]

    def tick_each(
        self, rollouts: Sequence[Rollout], pool: Executor | None = None, threads: int = 1
    ) -> list[TickResult | TickFailure]:
        """`tick`, but a rollout whose tick fails (an unreadable status, a conflict) gives a
        failure and the others still tick: for a controller of many rollouts. With POOL,
        the rollouts tick concurrently in THREADS shares of them (their writes overlap;
        one task per share, not per rollout)."""
        self._open_moves()
        seen = self.source.observe([r.key for r in rollouts])

        def each(rollout: Rollout) -> TickResult | TickFailure:
            try:
                return self._tick(rollout, seen[rollout.key])
            except ModelcanaryError as exc:
                return TickFailure(rollout.name, str(exc))

        if pool is None:
            return [each(rollout) for rollout in rollouts]
        shares = [rollouts[first::threads] for first in range(threads)]
        done = list(pool.map(lambda share: [each(rollout) for rollout in share], shares))
        return [done[k % threads][k // threads] for k in range(len(rollouts))]

    def _open_moves(self) -> None:
        """A tick begins: its slots for weight changes (taken atomically by `next`)."""
        self._moves = count() if self.moves_per_tick is None else iter(range(self.moves_per_tick))

    def _tick(self, rollout: Rollout, seen: Observations) -> TickResult:
        """One rollout's tick, its steps in order. A problem a step meets is reported with
        the result; only a router that fails or a move that cannot be saved ends it early."""
        spec, state = rollout.spec, rollout.store.load() or RolloutState()
        resynced = self.resync(rollout, state)
        if isinstance(resynced, TickResult):
            return resynced
        state, problems = resynced
        observed = self.observe(rollout, state, seen)
        judged = self.judge(rollout, state, observed)
        decision, new = next_state(spec, state, observed, judged, rollout.shadow is not None)
        problems += [*observed.problems, *judged.problems]
        problems += self.mirror(rollout, state, new, decision)  # act, on the mirror
        new = analysed(new, state, decision, observed, judged.verdict, problems)
        routed = self.route(rollout, state, new, decision, observed.intent, problems)  # act
        if isinstance(routed, TickResult):
            return routed
        problems += routed
        problems += self.record(rollout.store, state, new, observed)
        problems += self.notify(rollout, decision)
        return TickResult(rollout.name, new, decision, tuple(problems))

    def resync(self, rollout: Rollout, state: RolloutState) -> TickResult | Resynced:
        """Resync: apply the recorded weight if a change was never confirmed (`applied`
        False: killed mid-change) or this engine sees the rollout first (a router that
        restarted gets it back), and mirror again for a rollout that compares. A router
        that fails ends the tick."""
        problems: list[str] = []
        first_sight = rollout.name not in self._synced and state.phase != "Pending"
        if not state.applied or first_sight:
            try:
                rollout.router.route(state.weight, state.phase == "Promoted")
            except ModelcanaryError as exc:
                return TickResult(rollout.name, state, None, (f"router: {exc}",))
            if not state.applied:
                state = replace(state, applied=True)
                problems += _save(rollout.store, state)
        self._synced.add(rollout.name)
        if compares(rollout.spec, state):
            problems += self._start_mirror(rollout)  # first sight, or an earlier start failed
        return state, problems

    def observe(self, rollout: Rollout, state: RolloutState, seen: Observations) -> Observed:
        """Observe: the operator's intent, the alerts, the canary's readiness, the time, and
        the evidence since the ledger's marks (`seen` is what the metrics source saw)."""
        intent = _intent(rollout.store, state)
        seen = replace(seen, alerts=seen_alerts(seen.alerts, self.pushed(rollout.spec.model)))
        problems: list[str] = []
        if rollout.readiness is not None:
            try:
                seen = replace(seen, canary_ready=rollout.readiness())
            except ModelcanaryError as exc:
                problems.append(f"readiness: {exc}")
                seen = replace(seen, canary_ready=False)
        if seen.problem:
            problems.append(seen.problem)
        now = self.clock()
        counters = unread(seen)
        baseline, evidence = evidence_now(state, seen, counters, now)
        shadow_baseline, shadow = shadow_pairs(state, seen)
        return Observed(
            seen,
            intent,
            now,
            counters,
            baseline,
            evidence,
            shadow_baseline,
            shadow,
            tuple(problems),
        )

    def judge(self, rollout: Rollout, state: RolloutState, observed: Observed) -> Judged:
        """Judge: the verdict on what was observed and, before the first step with no
        intent to act on, the checks before traffic."""
        spec = rollout.spec
        shadow: ShadowInput = observed.shadow if compares(spec, state) else "off"
        given: JudgeInput = (spec, observed.seen, observed.evidence, state.weight, shadow)
        verdict = self._verdict(rollout.name, given)
        if state.phase != "Pending" or observed.intent is not None:
            return Judged(verdict)
        return _checked_before_traffic(rollout, verdict, observed.seen.canary_ready)

    def mirror(
        self, rollout: Rollout, state: RolloutState, new: RolloutState, decision: Decision
    ) -> list[str]:
        """Act, on the mirror: start it when the rollout begins to shadow, stop it when a
        rollout that mirrored ends."""
        if decision.action == "shadow":
            return self._start_mirror(rollout)
        if new.phase in FINISHED and state.phase not in FINISHED and mirrors(rollout.spec, state):
            self._mirroring.discard(rollout.name)
            return _shadow(rollout, start=False)
        return []

    def route(
        self,
        rollout: Rollout,
        state: RolloutState,
        new: RolloutState,
        decision: Decision,
        intent: Intent | None,
        problems: Sequence[str],
    ) -> TickResult | list[str]:
        """Act, on the router: a move (a new weight, a promotion, a rollback) is saved with
        `applied` False before the router applies it. A move that cannot be saved waits (a
        rollback goes ahead: stable is safe unrecorded), and so does one the router fails:
        either ends the tick."""
        promoted = new.phase == "Promoted"
        # a rollback restores stable even from 0% (before the first step, a KServe
        # InferenceService already serves the canary's model spec)
        rolled_back = new.phase == "RolledBack" and state.phase != "RolledBack"
        moved = new.weight != state.weight or promoted != (state.phase == "Promoted")
        if not moved and not rolled_back:
            return []
        if not rolled_back and intent is None and next(self._moves, None) is None:
            return TickResult(rollout.name, state, None, tuple(problems))  # at a later tick
        unsaved = _save(rollout.store, replace(new, applied=False))
        if unsaved and not rolled_back:  # a restart would not know of the move: wait
            held = (*problems, *unsaved, f"holding at {state.weight}% until it is written")
            return TickResult(rollout.name, state, None, held)
        try:
            rollout.router.route(new.weight, promoted)
        except ModelcanaryError as exc:
            if intent is not None:
                rollout.store.clear_intent(intent)
            failed = (*problems, *unsaved, f"router: {exc}")
            return TickResult(rollout.name, replace(new, applied=False), decision, failed)
        return unsaved

    def record(
        self, store: StateStore, state: RolloutState, new: RolloutState, observed: Observed
    ) -> list[str]:
        """Record: save the new state (with a heartbeat, only when more than the latest
        numbers changed or the last save is that old), then clear the intent acted on."""
        problems = [] if self._unchanged(state, new, observed.now) else _save(store, new)
        if observed.intent is not None:
            store.clear_intent(observed.intent)
        return problems

    def notify(self, rollout: Rollout, decision: Decision) -> list[str]:
        """Notify: tell on-call of a promotion, a rollback or a pause."""
        kind = EVENTS.get(decision.action)
        if kind is None:
            return []
        try:
            self.notifier.notify(event(kind, rollout.name, rollout.spec, decision))
        except ModelcanaryError as exc:
            return [f"notify: {exc}"]
        return []

    def _start_mirror(self, rollout: Rollout) -> list[str]:
        """Start the rollout's shadow comparison unless this engine already has."""
        if rollout.name in self._mirroring:
            return []
        problems = _shadow(rollout, start=True)
        if not problems:
            self._mirroring.add(rollout.name)
        return problems

    def _verdict(self, name: str, given: JudgeInput) -> Verdict:
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
        return settled(old) == settled(new) and old.analysis.at > fresh


def _checked_before_traffic(rollout: Rollout, verdict: Verdict, ready: bool) -> Judged:
    """The golden-sample check, then, on a ready canary shown to serve what PyTorch said,
    the holdout gate; a check that cannot run is a problem to report."""
    problems: list[str] = []
    golden, gate = None, None
    try:
        golden = rollout.golden()
    except ModelcanaryError as exc:
        problems.append(f"golden-sample check: {exc}")
    if golden is not None and golden.passed and ready:
        try:
            gate = (
                rollout.gate()
                if rollout.spec.analysis.holdout.enabled
                else GateResult("not checked", "the gate is off in the spec")
            )
        except ModelcanaryError as exc:
            problems.append(f"holdout gate: {exc}")
    return Judged(verdict, golden, gate, tuple(problems))


def _intent(store: StateStore, state: RolloutState) -> Intent | None:
    """The operator's intent not yet acted on; one acted on before a restart is cleared."""
    intent = store.read_intent()
    if intent is not None and intent.id and intent.id == state.handled_intent:
        store.clear_intent(intent)
        return None
    return intent


def _save(store: StateStore, state: RolloutState) -> list[str]:
    """Save the state; a store that cannot write is a problem to report, not a crash."""
    try:
        store.save(state)
    except StateNotSaved as exc:
        return [f"state: {exc}"]
    return []


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
