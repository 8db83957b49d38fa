"""What each version served since the rollout began: a ledger of per-replica increments.

Prometheus' counters belong to one serving replica each (one series per `instance`) and
restart from zero with it. The ledger takes differences per series, with Prometheus'
reset rule, and sums them per version:

- a series that went down restarted from zero: all it shows now is new, and what it had
  counted before stays counted;
- a series that appears after the ledger opened starts from zero (a new replica);
- a series that disappears keeps what it contributed, and continues from its last value
  if it comes back (a missed scrape).

So replicas may come and go, restart and scale without losing a counted request or
counting one from before the rollout. Before the first step the ledger only watches
(each series' latest counters, nothing counted); it opens when the canary gets its first
step, from a real observation (`unread` says why there is none), and lives in the
rollout's state, so a restarted controller carries on; it keeps at most `MAX_SERIES`
series per version (those gone longest fold into `retired`).

It also follows the canary's silence in counts, not clocks: stable's requests served
while the canary's counters stood still, counted per stable series from its first value
read after the canary's last movement up to the value before its latest, so scrapes of
the two versions up to an interval apart never fake a silence. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from modelcanary.rollout.ports import (
    Counts,
    NumericCounts,
    Observations,
    ShadowCounts,
    VersionStats,
)

NOTHING = Counts(0.0, 0.0)
MAX_SERIES = 32  # per version: replicas kept by name; the longest gone fold into `retired`


def _add(a: Counts, b: Counts) -> Counts:
    """The sum of two counts; buckets by bound (one side without a histogram adds none)."""
    # the usual cases first (a tick adds thousands): one side without a histogram, or
    # both with the same bounds
    if not (a.buckets and b.buckets) and _ascending(a.buckets or b.buckets):
        buckets = a.buckets or b.buckets
    elif _same_bounds(a, b):
        buckets = tuple((le, n + m) for (le, n), (_, m) in zip(a.buckets, b.buckets, strict=True))
    else:
        merged = dict(a.buckets)
        for le, n in b.buckets:
            merged[le] = merged.get(le, 0.0) + n
        buckets = tuple(sorted(merged.items()))
    return Counts(
        a.requests + b.requests,
        a.errors + b.errors,
        buckets,
        a.observed + b.observed,
    )


def _same_bounds(a: Counts, b: Counts) -> bool:
    """Both histograms have the same bounds, in ascending order."""
    return [le for le, _ in a.buckets] == [le for le, _ in b.buckets] and _ascending(a.buckets)


def _ascending(buckets: tuple[tuple[float, float], ...]) -> bool:
    bounds = [le for le, _ in buckets]
    return bounds == sorted(bounds)


def _increment(last: Counts | None, now: Counts) -> Counts:
    """What one series counted since it was last read; all of it after a restart (a
    counter went down) or for a series not read before."""
    if last is None or now.requests < last.requests or now.errors < last.errors:
        return now
    if _same_bounds(last, now):
        before = [m for _, m in last.buckets]
    else:
        old = dict(last.buckets)
        before = [old.get(le, 0.0) for le, _ in now.buckets]
    grown = [n - m for (_, n), m in zip(now.buckets, before, strict=True)]
    if now.observed < last.observed or min(grown, default=0.0) < 0:
        return now
    buckets = tuple(zip([le for le, _ in now.buckets], grown, strict=True))
    return Counts(
        now.requests - last.requests,
        now.errors - last.errors,
        buckets,
        now.observed - last.observed,
    )


@dataclass(frozen=True)
class Series:
    """One replica's counters as last read, what they added since the ledger opened, when
    they were last read, and the requests counted before their latest change."""

    name: str
    last: Counts
    counted: Counts
    seen_at: float
    previous: float = 0.0


@dataclass(frozen=True)
class Tally:
    """One version's series, and what series no longer kept had counted. (Lists, never
    maps by name: a merge patch of a status would keep the names a new map dropped.)"""

    series: tuple[Series, ...] = ()
    retired: Counts = NOTHING

    @property
    def total(self) -> Counts:
        total = self.retired
        for one in self.series:
            total = _add(total, one.counted)
        return total

    def read(self, replicas: Mapping[str, Counts], now: float, opening: bool) -> Tally:
        """The tally after reading these series (`opening`: they count from here)."""
        series = {s.name: s for s in self.series}
        for name, counts in replicas.items():
            old = series.get(name) or Series(name, NOTHING, NOTHING, now)
            counted, previous = old.counted, old.previous
            if not opening and not (name in series and counts == old.last):  # else: no news
                counted = _add(counted, _increment(old.last if name in series else None, counts))
                if counted.requests != old.counted.requests:
                    previous = old.counted.requests
            series[name] = Series(name, counts, counted, now, previous)
        kept = sorted(series.values(), key=lambda s: s.seen_at)
        excess = max(len(kept) - MAX_SERIES, 0)
        retired = self.retired
        for gone in kept[:excess]:  # those gone longest
            retired = _add(retired, gone.counted)
        return Tally(tuple(kept[excess:]), retired)


@dataclass(frozen=True)
class Silence:
    """Where the canary's silence began, per stable series: `canary` its requests when
    its counters last moved, `anchors` each stable series' requests then, `since` each
    one's first value read after its anchor (read after the canary's, however the two
    versions' scrapes are offset)."""

    canary: float = 0.0
    anchors: tuple[tuple[str, float], ...] = ()
    since: tuple[tuple[str, float], ...] = ()

    def read(self, stable: Tally, canary: float) -> Silence:
        counted = {s.name: s.counted.requests for s in stable.series}
        if canary != self.canary:  # the canary served: its silence starts over
            return Silence(canary, tuple(counted.items()))
        before, began = dict(self.anchors), dict(self.since)
        anchors = {name: before.get(name, n) for name, n in counted.items()}
        since = tuple(
            (name, began.get(name, n))
            for name, n in counted.items()
            if name in began or n > anchors[name]
        )
        return Silence(canary, tuple(anchors.items()), since)

    def stable_served(self, stable: Tally) -> float:
        """Stable's requests surely served while the canary's counters stood still: each
        series' from its first value after the canary's last movement up to the value
        before its latest (one scrape behind, so the canary's own scrape has caught up)."""
        began = dict(self.since)
        return sum(max(s.previous - began[s.name], 0.0) for s in stable.series if s.name in began)


@dataclass(frozen=True)
class Ledger:
    """Both versions' tallies since the canary's first step, and the canary's silence."""

    stable: Tally
    canary: Tally
    silence: Silence = field(default_factory=Silence)


def is_ledger(data: object) -> bool:
    """Whether a persisted baseline is a ledger (the state's schema reads it), not the
    summed baseline of a release before ledgers, which cannot be split into replicas."""
    stable = data.get("stable") if isinstance(data, dict) else None
    return isinstance(stable, dict) and "series" in stable


@dataclass(frozen=True)
class Evidence:
    """Counts since the rollout began, and the stable requests surely served since the
    canary last received one."""

    stable: Counts
    canary: Counts
    stable_since_canary: float


def _replicas(stats: VersionStats | None) -> Mapping[str, Counts] | None:
    return stats.replicas if stats is not None else None


def unread(seen: Observations) -> str | None:
    """Why the counters cannot open a ledger now, or None when they can: Prometheus
    answered and listed stable's series. (The canary's may be missing: one that never
    served has none yet, and its first series counts from zero.)"""
    if seen.problem:
        return seen.problem
    return None if _replicas(seen.stable) else "no stable counters in Prometheus yet"


def watch(ledger: Ledger | None, seen: Observations, now: float) -> Ledger:
    """Before the first step: each series' latest counters, nothing counted, so a series
    seen then (the canary's, serving mirrored requests) never counts its past."""
    if ledger is None:
        ledger = Ledger(Tally(), Tally())
    stable = ledger.stable.read(_replicas(seen.stable) or {}, now, opening=True)
    canary = ledger.canary.read(_replicas(seen.canary) or {}, now, opening=True)
    return Ledger(stable, canary)


def open_ledger(ledger: Ledger | None, seen: Observations, now: float) -> Ledger:
    """The ledger when the canary gets its first step: each series counts from its latest
    counters (read now, or before when missing now)."""
    watched = watch(ledger, seen, now)
    return replace(
        watched, silence=Silence(0.0, tuple((s.name, 0.0) for s in watched.stable.series))
    )


def advance(ledger: Ledger, seen: Observations, now: float) -> tuple[Ledger, Evidence]:
    """The ledger after this observation, and the evidence since the rollout began. A
    version whose series are missing served nothing new."""
    stable = ledger.stable.read(_replicas(seen.stable) or {}, now, opening=False)
    canary = ledger.canary.read(_replicas(seen.canary) or {}, now, opening=False)
    canary_total = canary.total
    silence = ledger.silence.read(stable, canary_total.requests)
    kept = replace(ledger, stable=stable, canary=canary, silence=silence)
    return kept, Evidence(stable.total, canary_total, silence.stable_served(stable))


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
        now.pairs - baseline.pairs,
        now.agreeing - baseline.agreeing,
        now.compared - baseline.compared,
        numeric,
        now.classifies,
    )
    return since, baseline
