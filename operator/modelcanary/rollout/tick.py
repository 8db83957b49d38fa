"""The values a tick passes from step to step (`Observed`, `Judged`), and the steps and
parts of steps that need no port: the evidence, the alerts, the next state and its
analysis. The engine runs the steps; pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from modelcanary.rollout.decision import Decision
from modelcanary.rollout.evidence import (
    Evidence,
    Ledger,
    advance,
    open_ledger,
    shadow_since,
    watch,
)
from modelcanary.rollout.intents import FINISHED, Intent
from modelcanary.rollout.judge import Verdict
from modelcanary.rollout.ports import (
    EventKind,
    FiringAlert,
    GateResult,
    GoldenResult,
    Observations,
    RolloutEvent,
    ShadowCounts,
)
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import LastAnalysis, RolloutState
from modelcanary.rollout.stepper import apply, decide

ShadowInput = ShadowCounts | Literal["off"] | None  # the judge's: pairs, no data, or "off"
JudgeInput = tuple[RolloutSpec, Observations, Evidence | None, int, ShadowInput]  # its inputs


@dataclass(frozen=True)
class Observed:
    """What a tick saw of one rollout: the observations (with the pushed alerts Prometheus
    confirms, and the canary's readiness), the operator's intent, the time, why the
    counters cannot open a ledger now (None: they can), the ledger and the evidence since
    the first step, the comparator's baseline and its pairs since the shadow comparison
    began, and the problems met."""

    seen: Observations
    intent: Intent | None
    now: float
    counters: str | None
    baseline: Ledger | None
    evidence: Evidence | None
    shadow_baseline: ShadowCounts | None
    shadow: ShadowCounts | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judged:
    """The judge's verdict; before the first step, the golden-sample check and the holdout
    gate (None: not run), and the problems met running them."""

    verdict: Verdict
    golden: GoldenResult | None = None
    gate: GateResult | None = None
    problems: tuple[str, ...] = ()


def seen_alerts(
    prometheus: tuple[FiringAlert, ...], pushed: Sequence[FiringAlert]
) -> tuple[FiringAlert, ...]:
    """Prometheus' alerts and the pushed ones it has too, once each."""
    return _merge(prometheus, _confirmed(pushed, prometheus))


def evidence_now(
    state: RolloutState, seen: Observations, counters: str | None, now: float
) -> tuple[Ledger | None, Evidence | None]:
    """The ledger after this observation and, from the first step on, the evidence since
    it opened. Before the first step it watches the counters; an outage moves no mark."""
    baseline = state.baseline
    if state.step < 0:
        return (baseline if seen.problem else watch(baseline, seen, now)), None
    if baseline is None and counters is None:
        return open_ledger(None, seen, now), None  # a step taken unread, or an old state
    if baseline is not None and not seen.problem:
        return advance(baseline, seen, now)
    return baseline, None


def shadow_pairs(
    state: RolloutState, seen: Observations
) -> tuple[ShadowCounts | None, ShadowCounts | None]:
    """The comparator's baseline to keep, and its pairs since the shadow comparison began
    (None: nothing to count)."""
    if state.shadow_baseline is None or seen.shadow is None or seen.problem:
        return state.shadow_baseline, None
    pairs, baseline = shadow_since(state.shadow_baseline, seen.shadow)
    return baseline, pairs


def next_state(
    spec: RolloutSpec,
    state: RolloutState,
    observed: Observed,
    judged: Judged,
    shadow_available: bool,
) -> tuple[Decision, RolloutState]:
    """Decide: the stepper's decision and the state it leads to, with the checks before
    traffic and the ledgers carried on; `shadow_available`: the platform mirrors."""
    seen, now = observed.seen, observed.now
    decision = decide(
        spec,
        state,
        judged.verdict,
        seen.alerts,
        observed.intent,
        now,
        judged.golden,
        judged.gate,
        shadow_available,
        observed.counters,
    )
    new = apply(state, decision, now)
    if judged.golden is not None:
        new = replace(new, golden=judged.golden, gate=judged.gate or new.gate)
    if state.step < 0 <= new.step:  # the first step: every request from here on counts once
        opened = open_ledger(observed.baseline, seen, now) if observed.counters is None else None
        new = replace(new, baseline=opened)
    elif decision.action != "restart":  # a new attempt watches its counters anew
        new = replace(new, baseline=observed.baseline)
    if decision.action == "shadow":
        new = replace(new, shadow_baseline=seen.shadow or ShadowCounts(0.0, 0.0, 0.0))
    elif new.shadow_baseline is not None and new.phase != "Pending":
        new = replace(new, shadow_baseline=observed.shadow_baseline)
    return decision, new


def analysed(
    new: RolloutState,
    state: RolloutState,
    decision: Decision,
    observed: Observed,
    verdict: Verdict,
    problems: Sequence[str],
) -> RolloutState:
    """The new state with what this tick saw and concluded (the decision's reason and the
    problems met), and the intent it acted on."""
    intent = observed.intent
    reason = decision.reason + "".join(f"; {p}" for p in problems)
    return replace(
        new,
        analysis=LastAnalysis(
            observed.now, verdict.result, verdict.checks, observed.seen.alerts, reason
        ),
        handled_intent=intent.id if intent is not None and intent.id else state.handled_intent,
    )


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


def mirrors(spec: RolloutSpec, state: RolloutState) -> bool:
    """The rollout began a shadow comparison, so its canary gets mirrored requests."""
    return spec.shadow.enabled and state.shadow_started_at is not None


def compares(spec: RolloutSpec, state: RolloutState) -> bool:
    """The rollout's canary is compared with stable now: it mirrors and is not finished."""
    return mirrors(spec, state) and state.phase not in FINISHED


def settled(state: RolloutState) -> RolloutState:
    """The state without what changes on every tick while nothing happens."""
    return replace(state, analysis=None, last_data_at=None, baseline=None, shadow_baseline=None)


def event(kind: EventKind, name: str, spec: RolloutSpec, decision: Decision) -> RolloutEvent:
    """What on-call is told of a promotion, a rollback or a pause."""
    return RolloutEvent(
        kind=kind,
        rollout=name,
        model=spec.model,
        stable=spec.stable.version,
        canary=spec.canary.version,
        reason=decision.reason,
        numbers=dict(decision.numbers),
    )
