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

from modelcanary.rollout.ports import Counts, Observations, VersionStats

NOTHING = Counts(0.0, 0.0)


@dataclass(frozen=True)
class Baseline:
    """The counters at the rollout's start, and both versions' request counters when the
    canary last received a request."""

    stable: Counts
    canary: Counts
    mark_stable: float = 0.0
    mark_canary: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        def counts(raw: dict[str, Any]) -> Counts:
            buckets = tuple((float(le), float(n)) for le, n in raw.get("buckets", ()))
            return Counts(float(raw["requests"]), float(raw["errors"]), buckets)

        return cls(
            counts(data["stable"]), counts(data["canary"]),
            float(data.get("mark_stable", 0.0)), float(data.get("mark_canary", 0.0)),
        )  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """Counts since the rollout began, and the stable requests served since the canary last
    received one."""

    stable: Counts
    canary: Counts
    stable_since_canary: float


def _totals(stats: VersionStats | None) -> Counts | None:
    return stats.totals if stats is not None else None


def _finite(counts: Counts) -> Counts:
    """Without the +Inf bucket (its count is the request count; JSON has no infinity)."""
    return replace(counts, buckets=tuple(b for b in counts.buckets if b[0] != float("inf")))


def start(seen: Observations) -> Baseline:
    """The baseline when the canary gets its first step (a missing version counts from 0)."""
    stable = _finite(_totals(seen.stable) or NOTHING)
    canary = _finite(_totals(seen.canary) or NOTHING)
    return Baseline(stable, canary, stable.requests, canary.requests)


def _since(now: Counts, then: Counts) -> tuple[Counts, Counts]:
    """(counts since `then`, the baseline to keep); a counter that went down restarted."""
    if now.requests < then.requests or now.errors < then.errors:
        then = replace(NOTHING, buckets=tuple((le, 0.0) for le, _ in now.buckets))
    before = dict(then.buckets)
    buckets = tuple(
        (le, min(max(n - before.get(le, 0.0), 0.0), now.requests - then.requests))
        for le, n in now.buckets
        if le in before or not then.buckets
    )
    return Counts(now.requests - then.requests, now.errors - then.errors, buckets), then


def advance(baseline: Baseline, seen: Observations) -> tuple[Baseline, Evidence]:
    """The counts since the baseline, and the baseline to keep (rebased after a restart,
    marked where the canary last received a request). A version whose series are missing
    served nothing new."""
    stable_now = _finite(_totals(seen.stable) or baseline.stable)
    canary_now = _finite(_totals(seen.canary) or baseline.canary)
    if canary_now.requests < baseline.mark_canary:  # restarted: its mark restarts too
        baseline = replace(baseline, mark_canary=0.0)
    stable, stable_base = _since(stable_now, baseline.stable)
    canary, canary_base = _since(canary_now, baseline.canary)
    mark_stable, mark_canary = baseline.mark_stable, baseline.mark_canary
    if canary_now.requests > mark_canary or stable_now.requests < mark_stable:
        mark_stable, mark_canary = stable_now.requests, canary_now.requests
    kept = Baseline(stable_base, canary_base, mark_stable, mark_canary)
    return kept, Evidence(stable, canary, max(stable_now.requests - mark_stable, 0.0))
