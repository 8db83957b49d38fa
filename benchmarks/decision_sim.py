"""Synthetic traffic and an emulated Prometheus for `bench_decisions.py`.

`World` serves per-second traffic of a stable and a canary version: a Poisson number of
requests split by the canary weight (binomial), server errors (binomial) and latencies
(lognormal, or a mixture with a slow share) counted into `metrics_contract.LATENCY_BUCKETS`
(multinomial: the same counts as drawing each latency and bucketing it). Each version has
cumulative counters: requests, errors and the cumulative `le` buckets ending at +Inf.

`Prometheus` scrapes those counters, evaluates the recording and alert rules of a profile
(`for:` durations included) and is the engine's `MetricsSource`. Its `rate` is Prometheus'
extrapolated rate over the scraped samples of a left-open window (Prometheus 3), and its
P99 is `histogram_quantile` (linear interpolation within the bucket; the last finite bound
when the rank falls in +Inf). A canary whose target is down is no longer scraped: its
counters go stale at once, while range queries still see its older samples until they
leave the window, as in Prometheus. While Prometheus is down (the "gap"), nothing is
scraped or evaluated and every query fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modelcanary.alerts.profile import Profile
from modelcanary.durations import parse_duration
from modelcanary.metrics_contract import LATENCY_BUCKETS
from modelcanary.rollout.ports import (
    Counts,
    FiringAlert,
    Observations,
    RolloutKey,
    VersionStats,
)

Floats = NDArray[np.float64]
BOUNDS = np.array(LATENCY_BUCKETS)
REQ, ERR, BUCKETS = 0, 1, 2  # counter columns; BUCKETS.. are the `le` buckets, +Inf last
WIDTH = BUCKETS + len(BOUNDS) + 1
STABLE, CANARY = 0, 1
SLOTS = 3  # replicas a version may have (each its own series, as Prometheus scrapes pods)
UNREACHABLE = "Prometheus unreachable"


def latency_probs(
    median_s: float, p99_s: float, slow_share: float = 0.0, slow_factor: float = 1.0
) -> Floats:
    """P(latency in each bucket), +Inf last: a lognormal with this median and P99, of which
    `slow_share` is `slow_factor` times slower."""
    sigma = math.log(p99_s / median_s) / 2.3263478740408408

    def cdf(median: float) -> Floats:
        z = (np.log(BOUNDS) - math.log(median)) / (sigma * math.sqrt(2))
        return np.array([0.5 * (1 + math.erf(v)) for v in z])

    mixed = (1 - slow_share) * cdf(median_s) + slow_share * cdf(median_s * slow_factor)
    probs: Floats = np.clip(np.diff(np.concatenate(([0.0], mixed, [1.0]))), 0.0, 1.0)
    normalized: Floats = probs / probs.sum()
    return normalized


@dataclass(frozen=True)
class Behaviour:
    """How one version answers: its error probability and latency bucket probabilities."""

    error: float
    probs: Floats


def replica(version: int, slot: int) -> str:
    """A replica's series name (its `instance`)."""
    return f"10.0.{version}.{slot}:8000"


class World:
    """Both versions' traffic and per-replica counters, the split the router set, and the
    canary's failed requests (including those lost to a crashed canary, which no series
    records). Each version's requests spread evenly over its live replicas; a replica that
    restarts counts from zero, one scaled away is no longer scraped."""

    def __init__(
        self, rng: np.random.Generator, rate: float, stable: Behaviour, replicas: int = 1
    ) -> None:
        self.rng = rng
        self.rate = rate
        self.behaviour = [stable, stable]
        self.counters = np.zeros((2, SLOTS, WIDTH))
        self.live = np.zeros((2, SLOTS), dtype=bool)
        self.live[:, :replicas] = True
        self.exists = np.zeros((2, SLOTS), dtype=bool)  # series exist from the first request
        self.exists[STABLE, :replicas] = True
        self.down = [False, False]  # a crashed target: requests fail, nothing is scraped
        self.burst = False  # the canary fails every request
        self.weight = 0  # canary percent
        self.canary_failed = 0

    def route(self, weight: int, promoted: bool) -> None:
        self.weight = 100 if promoted else weight

    def draw(self, requests: NDArray[np.int64], behaviour: Behaviour, error: float) -> Floats:
        """Per-second counter increments (seconds x WIDTH) for these request counts."""
        out = np.zeros((len(requests), WIDTH))
        if not requests.any():
            return out
        out[:, REQ] = requests
        out[:, ERR] = self.rng.binomial(requests, error)
        out[:, BUCKETS:] = np.cumsum(self.rng.multinomial(requests, behaviour.probs), axis=1)
        return out

    def scale(self, replicas: int) -> None:
        """Both versions to this many replicas: new ones count from zero."""
        for slot in range(SLOTS):
            if slot < replicas and not self.live[0, slot]:
                self.counters[:, slot] = 0.0
            self.live[:, slot] = slot < replicas

    def restart(self, slot: int) -> None:
        """Both versions' replica in this slot restarts: its counters start from zero."""
        self.counters[:, slot] = 0.0

    def history(self, seconds: int, scrape_s: int) -> Floats:
        """Stable alone for `seconds` before the rollout: its replicas' counters at every
        scrape (scrapes x SLOTS x WIDTH)."""
        stable = self.behaviour[STABLE]
        samples = np.zeros((seconds // scrape_s, SLOTS, WIDTH))
        for slot in np.flatnonzero(self.live[STABLE]):
            requests = self.rng.poisson(self.rate / self.live[STABLE].sum(), seconds)
            steps = self.draw(requests, stable, stable.error).reshape(-1, scrape_s, WIDTH)
            samples[:, slot] = np.cumsum(steps.sum(axis=1), axis=0)
        self.counters[STABLE] = samples[-1]
        return samples

    def serve(self, seconds: int) -> None:
        """`seconds` of traffic at the current split, spread over the live replicas."""
        total = self.rng.poisson(self.rate, seconds)
        canary = self.rng.binomial(total, self.weight / 100)
        for version, requests in ((STABLE, total - canary), (CANARY, canary)):
            if not requests.any():
                continue
            if version == CANARY and self.down[CANARY]:
                self.canary_failed += int(requests.sum())
                continue
            behaviour = self.behaviour[version]
            error = 1.0 if version == CANARY and self.burst else behaviour.error
            slots = np.flatnonzero(self.live[version])
            shares = self.rng.multinomial(requests, np.full(len(slots), 1 / len(slots)))
            for k, slot in enumerate(slots):
                increments = self.draw(shares[:, k], behaviour, error).sum(axis=0)
                self.counters[version, slot] += increments
                self.exists[version, slot] |= bool(shares[:, k].any())
                if version == CANARY:
                    self.canary_failed += int(increments[ERR])


@dataclass(frozen=True)
class Window:
    """A version's increases over a window, as Prometheus' `rate(...) * window` gives them."""

    requests: float
    errors: float
    p99_s: float | None


@dataclass(frozen=True)
class Recorded:
    """The recording rules' series of one version at one evaluation."""

    rate: float  # requests/s over the window
    error_rate: float
    p99_s: float | None
    baseline: float  # requests/s over the baseline window

    @property
    def error_ratio(self) -> float | None:
        return self.error_rate / self.rate if self.rate > 0 else None  # NaN in PromQL


class PrometheusDown(Exception):
    pass


def quantile(q: float, cumulative: Floats) -> float | None:
    """`histogram_quantile` over cumulative bucket increases ending at +Inf."""
    cumulative = np.maximum.accumulate(cumulative)  # as Prometheus repairs rate() noise
    total = float(cumulative[-1])
    if not total > 0:
        return None
    rank = q * total
    i = int(np.searchsorted(cumulative[:-1], rank, side="left"))
    if i >= len(BOUNDS):
        return float(BOUNDS[-1])
    low, below = (0.0, 0.0) if i == 0 else (float(BOUNDS[i - 1]), float(cumulative[i - 1]))
    inside = float(cumulative[i]) - below
    return low + (float(BOUNDS[i]) - low) * ((rank - below) / inside if inside > 0 else 1.0)


class Prometheus:
    """Scrapes the world, evaluates the profile's rules, answers the engine's queries."""

    def __init__(
        self,
        world: World,
        profile: Profile,
        key: RolloutKey,
        capacity: int,
        gap: tuple[float, float] | None = None,
    ) -> None:
        self.world = world
        self.profile = profile
        self.key = key
        self.window_s = parse_duration(profile.window)
        self.baseline_s = parse_duration(profile.baseline_window)
        self.gap = gap
        self.times = np.full((2, SLOTS, capacity), -np.inf)
        self.samples = np.zeros((2, SLOTS, capacity, WIDTH))
        self.count = np.zeros((2, SLOTS), dtype=int)
        self.fresh = np.zeros((2, SLOTS), dtype=bool)  # scraped at the last scrape (not stale)
        self.weight = 0  # the split's gauge at the last scrape
        self.now = 0.0
        self.recorded: dict[int, Recorded] = {}
        self.active: dict[tuple[str, int], float] = {}  # (alert, version): active since
        self.alerts: tuple[FiringAlert, ...] = ()
        self.rules: list[Rule] = _rules(profile)

    def is_down(self, t: float) -> bool:
        return self.gap is not None and self.gap[0] <= t < self.gap[1]

    def add(self, version: int, slot: int, t: float, values: Floats) -> None:
        n = self.count[version, slot]
        self.times[version, slot, n] = t
        self.samples[version, slot, n] = values
        self.count[version, slot] = n + 1

    def scrape(self, t: float, versions: tuple[int, ...] = (STABLE, CANARY)) -> None:
        """Scrape these versions' targets (the split's gauge with stable's)."""
        if self.is_down(t):
            return
        if STABLE in versions:
            self.weight = self.world.weight
        for version in versions:
            for slot in range(SLOTS):
                up = (
                    self.world.exists[version, slot]
                    and self.world.live[version, slot]
                    and not self.world.down[version]
                )
                self.fresh[version, slot] = up
                if up:
                    self.add(version, slot, t, self.world.counters[version, slot].copy())

    def increase(self, version: int, t: float, window: float) -> Floats | None:
        """`sum(increase(...))` over the version's replicas: each series' extrapolated
        increase over (t - window, t] (None without a series of two samples in it)."""
        found = [self._increase(version, s, t, window) for s in range(SLOTS)]
        present = [f for f in found if f is not None]
        return np.sum(present, axis=0) if present else None

    def _increase(self, version: int, slot: int, t: float, window: float) -> Floats | None:
        """Prometheus' extrapolated `increase` of every counter of one series, with its
        counter resets (a value below the one before: the counter restarted from zero)."""
        n = self.count[version, slot]
        times = self.times[version, slot, :n]
        lo = int(np.searchsorted(times, t - window, side="right"))
        hi = int(np.searchsorted(times, t, side="right"))
        if hi - lo < 2:
            return None
        values = self.samples[version, slot, lo:hi]
        first, last = values[0], values[-1]
        steps = np.diff(values, axis=0)
        delta = last - first + np.where(steps < 0, values[:-1], 0.0).sum(axis=0)
        sampled = times[hi - 1] - times[lo]
        average = sampled / (hi - lo - 1)
        to_start, to_end = times[lo] - (t - window), t - times[hi - 1]
        if to_start >= average * 1.1:
            to_start = average / 2
        if to_end >= average * 1.1:
            to_end = average / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            to_zero = np.where(delta > 0, sampled * first / delta, np.inf)
        result: Floats = delta * (sampled + np.minimum(to_start, to_zero) + to_end) / sampled
        return result

    def query(self, version: int, t: float, window: float) -> Window | None:
        """A version's requests, errors and P99 over a window; None without series."""
        if self.is_down(t):
            raise PrometheusDown(UNREACHABLE)
        increase = self.increase(version, t, window)
        if increase is None:
            return None
        p99 = quantile(0.99, increase[BUCKETS:])
        return Window(float(increase[REQ]), float(increase[ERR]), p99)

    def evaluate(self, t: float) -> None:
        """One rule evaluation: the recording rules, then the alert rules with `for:`."""
        if self.is_down(t):
            return
        recorded = {}
        for version in (STABLE, CANARY):
            increase = self.increase(version, t, self.window_s)
            if increase is None:
                continue
            baseline = self.increase(version, t, self.baseline_s)
            recorded[version] = Recorded(
                float(increase[REQ]) / self.window_s,
                float(increase[ERR]) / self.window_s,
                quantile(0.99, increase[BUCKETS:]),
                0.0 if baseline is None else float(baseline[REQ]) / self.baseline_s,
            )
        self.recorded = recorded
        alerts = []
        for name, severity, hold_s, condition in self.rules:
            for version in recorded:
                key = (name, version)
                if not condition(self, version):
                    self.active.pop(key, None)
                    continue
                since = self.active.setdefault(key, t)
                label = self.key.canary if version == CANARY else self.key.stable
                firing = t - since >= hold_s
                alerts.append(FiringAlert(name, severity, label, "firing" if firing else "pending"))
        self.alerts = tuple(alerts)

    def expected_share(self, version: int) -> float:
        return (self.weight if version == CANARY else 100 - self.weight) / 100

    def totals(self, version: int) -> dict[str, Counts] | None:
        """Each fresh replica's counters as last scraped (None: no series)."""
        found = {}
        for slot in np.flatnonzero(self.fresh[version]):
            row = self.samples[version, slot, self.count[version, slot] - 1].tolist()
            buckets = row[BUCKETS:]  # the finite bounds, then +Inf: the histogram's total
            finite = tuple(zip(LATENCY_BUCKETS, buckets[:-1], strict=True))
            found[replica(version, int(slot))] = Counts(row[REQ], row[ERR], finite, buckets[-1])
        return found or None

    def stats(self, version: int) -> VersionStats | None:
        r = self.recorded.get(version)
        if r is None:  # a new series has counters before it has a rate (two scrapes)
            totals = self.totals(version)
            return None if totals is None else VersionStats(0.0, 0.0, None, totals)
        w = self.window_s
        return VersionStats(r.rate * w, r.error_rate * w, r.p99_s, self.totals(version))

    def observe(self, rollouts: Sequence[RolloutKey]) -> dict[RolloutKey, Observations]:
        """The engine's port: the last evaluation's series and alerts, at `self.now`."""
        if self.is_down(self.now):
            return {key: Observations(None, None, problem=UNREACHABLE) for key in rollouts}
        seen = Observations(self.stats(STABLE), self.stats(CANARY), alerts=self.alerts)
        return {key: seen for key in rollouts}


Rule = tuple[str, str, float, Callable[[Prometheus, int], bool]]


def _rules(p: Profile) -> list[Rule]:
    """The profile's alert rules (alerts/rules.py), one condition each on the recorded
    series; `judged` is `REQUESTS >= min_request_rate` of the alert's own version."""

    def judged(prom: Prometheus, v: int) -> bool:
        return prom.recorded[v].rate >= p.min_request_rate

    def high_errors(prom: Prometheus, v: int) -> bool:
        ratio = prom.recorded[v].error_ratio
        return ratio is not None and ratio > p.error_ratio_max and judged(prom, v)

    def slow(prom: Prometheus, v: int) -> bool:
        p99 = prom.recorded[v].p99_s
        return p99 is not None and p99 > p.latency_p99_max_s and judged(prom, v)

    def below_share(prom: Prometheus, v: int) -> bool:
        total = sum(r.rate for r in prom.recorded.values())
        share = prom.recorded[v].rate / total if total > 0 else math.nan
        return share < prom.expected_share(v) * p.qps_share_min and total >= p.min_request_rate

    def dropped(prom: Prometheus, v: int) -> bool:
        expected = sum(r.baseline for r in prom.recorded.values()) * prom.expected_share(v)
        return prom.recorded[v].rate < p.qps_past_min * expected and expected >= p.min_request_rate

    def errors_above_stable(prom: Prometheus, v: int) -> bool:
        stable = prom.recorded.get(STABLE)
        if v != CANARY or stable is None:
            return False
        c, s = prom.recorded[v].error_ratio, stable.error_ratio
        return c is not None and s is not None and c - s > p.canary_error_margin and judged(prom, v)

    def slower_than_stable(prom: Prometheus, v: int) -> bool:
        stable = prom.recorded.get(STABLE)
        if v != CANARY or stable is None:
            return False
        c, s = prom.recorded[v].p99_s, stable.p99_s
        if c is None or not s:
            return False
        return c / s > p.canary_latency_ratio and judged(prom, v) and c > p.canary_latency_floor_s

    seconds = parse_duration
    return [
        ("ModelVersionHighErrorRatio", "critical", seconds(p.error_ratio_for), high_errors),
        ("ModelVersionHighLatencyP99", "critical", seconds(p.latency_for), slow),
        ("ModelVersionTrafficBelowShare", "warning", seconds(p.qps_for), below_share),
        ("ModelVersionTrafficDrop", "warning", seconds(p.qps_for), dropped),
        (
            "ModelCanaryErrorRatioAboveStable",
            "critical",
            seconds(p.canary_for),
            errors_above_stable,
        ),
        ("ModelCanaryLatencyAboveStable", "critical", seconds(p.canary_for), slower_than_stable),
    ]
