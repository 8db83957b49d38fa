"""What each version served since the rollout began: cumulative counters minus a baseline.

The baseline is taken when the canary gets its first step, and kept in the rollout's
state, so every request is counted once however often the judge looks. A counter that went
down (a serving process restarted) is counted again from zero. The baseline also marks
where the canary last received a request, so a canary that stops answering while it holds
weight shows as stable requests served without it. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from modelcanary.rollout.ports import (
    Counts,
    NumericCounts,
    Observations,
    ShadowCounts,
    VersionStats,
)

NOTHING = Counts(0.0, 0.0)


@dataclass(frozen=True)
class Baseline:
    """The counters at the rollout's start, and both versions' request counters when the
    canary last received a request."""

    stable: Counts
    canary: Counts
    canary_seen: Counts  # the canary's counters when last seen (kept while its series are gone)
    mark_stable: float = 0.0  # stable's requests when the canary last received one
    mark_at: float = 0.0  # and when that was
    stable_seen: Counts | None = None  # stable's counters when last seen

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        def counts(raw: dict[str, Any]) -> Counts:
            buckets = tuple((float(le), float(n)) for le, n in raw.get("buckets", ()))
            return Counts(
                float(raw["requests"]), float(raw["errors"]), buckets,
                float(raw.get("observed", 0.0)),
            )  # fmt: skip

        return cls(
            counts(data["stable"]), counts(data["canary"]), counts(data["canary_seen"]),
            float(data.get("mark_stable", 0.0)), float(data.get("mark_at", 0.0)),
            counts(data["stable_seen"]) if data.get("stable_seen") else None,
        )  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """Counts since the rollout began, and the stable requests served since the canary last
    received one."""

    stable: Counts
    canary: Counts
    stable_since_canary: float
    stalled_s: float = 0.0  # seconds since the canary last received a request


def _totals(stats: VersionStats | None) -> Counts | None:
    return stats.totals if stats is not None else None


def start(seen: Observations, now: float) -> Baseline:
    """The baseline when the canary gets its first step (a missing version counts from 0)."""
    stable = _totals(seen.stable) or NOTHING
    canary = _totals(seen.canary) or NOTHING
    return Baseline(stable, canary, canary, stable.requests, now, stable)


def _since(now: Counts, then: Counts) -> tuple[Counts, Counts]:
    """(counts since `then`, the baseline to keep); a counter that went down restarted."""
    if now.requests < then.requests or now.errors < then.errors or now.observed < then.observed:
        then = replace(NOTHING, buckets=tuple((le, 0.0) for le, _ in now.buckets))
    before = dict(then.buckets)
    observed = now.observed - then.observed
    buckets = tuple(
        (le, min(max(n - before.get(le, 0.0), 0.0), observed))
        for le, n in now.buckets
        if le in before or not then.buckets
    )
    since = Counts(now.requests - then.requests, now.errors - then.errors, buckets, observed)
    return since, then


def advance(baseline: Baseline, seen: Observations, now: float) -> tuple[Baseline, Evidence]:
    """The counts since the baseline, and the baseline to keep (rebased after a restart,
    marked where the canary last received a request). A version whose series are missing
    served nothing new."""
    stable_now = _totals(seen.stable) or baseline.stable_seen or baseline.stable
    canary_now = _totals(seen.canary) or baseline.canary_seen
    stable, stable_base = _since(stable_now, baseline.stable)
    canary, canary_base = _since(canary_now, baseline.canary)
    mark, mark_at = baseline.mark_stable, baseline.mark_at
    progressed = canary_now.requests != baseline.canary_seen.requests  # more, or restarted
    if progressed or stable_now.requests < mark:
        mark, mark_at = stable_now.requests, now
    kept = Baseline(stable_base, canary_base, canary_now, mark, mark_at, stable_now)
    stalled = max(stable_now.requests - mark, 0.0)
    return kept, Evidence(stable, canary, stalled, max(now - mark_at, 0.0))


def shadow_since(baseline: ShadowCounts, now: ShadowCounts) -> tuple[ShadowCounts, ShadowCounts]:
    """The comparator's pairs since the shadow comparison began, and the baseline to keep
    (from zero again when a counter went down: the comparator restarted)."""
    before = {n.output: n for n in baseline.numeric}
    zero = NumericCounts("", 0.0, 0.0)
    if (
        now.pairs < baseline.pairs
        or now.agreeing < baseline.agreeing
        or (now.compared < baseline.compared)
        or any(
            n.pairs < before.get(n.output, zero).pairs
            or n.within < before.get(n.output, zero).within
            for n in now.numeric
        )
    ):
        baseline, before = ShadowCounts(0.0, 0.0, 0.0), {}
    numeric = tuple(
        NumericCounts(
            n.output,
            n.pairs - before.get(n.output, zero).pairs,
            n.within - before.get(n.output, zero).within,
        )
        for n in now.numeric
    )
    since = ShadowCounts(
        now.pairs - baseline.pairs, now.agreeing - baseline.agreeing,
        now.compared - baseline.compared, numeric, now.classifies,
    )  # fmt: skip
    return since, baseline
