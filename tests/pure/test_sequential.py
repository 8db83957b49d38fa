"""The sequential canary-vs-stable tests: table-driven cases, a brute-force check of the
e-value, and seeded simulations of healthy and regressed canaries checked every 100
requests. `python -m tests.pure.test_sequential` prints the simulation table that
docs/sequential-tests.md quotes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from modelcanary.metrics_contract import LATENCY_BUCKETS
from modelcanary.rollout.sequential import (
    PRIOR,
    compare,
    compare_latency,
    log_e_above,
    log_e_value,
    upper_bound,
)

BOUNDS = (*LATENCY_BUCKETS, math.inf)
EVERY = 100  # requests between two looks
RUNS = 300


def _each(test: Callable[..., float], *arrays: np.ndarray | float) -> np.ndarray:
    """The test on each element of arrays of counts (broadcast), as an array."""
    columns = np.broadcast_arrays(*arrays)
    flat = [c.ravel().tolist() for c in columns]
    return np.array([test(*case) for case in zip(*flat, strict=True)], dtype=float).reshape(
        columns[0].shape
    )


# --- cases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary", "stable", "margin", "decision", "upper_between"),
    [
        ((0, 0), (0, 0), 0.005, "no evidence", (0.99, 1.0)),  # no data rules out nothing
        ((1, 1), (19, 0), 0.005, "no evidence", (0.5, 1.0)),  # one failed request is not proof
        ((100, 30), (1900, 10), 0.005, "regression", (0.4, 0.55)),  # 30% errors, 100 requests
        ((20, 6), (380, 2), 0.005, "regression", (0.6, 0.75)),  # ... and at 20
        ((2000, 10), (38000, 190), 0.005, "no evidence", (0.005, 0.015)),  # healthy, 0.5% both
        ((2000, 40), (38000, 190), 0.005, "no evidence", (0.02, 0.05)),  # 2%: not yet
        ((8000, 160), (152000, 760), 0.005, "regression", (0.015, 0.025)),  # 2%: now
        ((8000, 60), (152000, 760), 0.005, "no evidence", (0.002, 0.01)),  # 0.75%: in margin
        ((50000, 2500), (50000, 2000), 0.0, "regression", (0.01, 0.02)),  # 5% vs 4%, no margin
        ((50000, 2500), (50000, 2000), 0.02, "no evidence", (0.01, 0.02)),  # ... 2-point margin
    ],
)
def test_error_comparison(
    canary: tuple[int, int],
    stable: tuple[int, int],
    margin: float,
    decision: str,
    upper_between: tuple[float, float],
) -> None:
    result = compare(*canary, *stable, alpha=0.05, margin=margin)
    assert result.decision == decision
    assert upper_between[0] <= result.upper <= upper_between[1]
    assert result.upper >= result.difference
    assert (result.log_e >= math.log(20)) == (decision == "regression")
    if result.difference <= margin:
        assert result.log_e <= 1e-9  # within the margin there is never evidence


def test_a_verdict_explains_itself() -> None:
    text = compare(8000, 160, 152000, 760, alpha=0.05, margin=0.005).explain()
    assert text.startswith("error ratio +1.50 points (160/8000 canary, 760/152000 stable)")
    assert "regression at 20 beyond a 0.5-point margin: regression" in text
    assert text.endswith("points above stable (95%)")
    text = compare(2000, 10, 38000, 190, alpha=0.01, margin=0.005).explain()
    assert "no evidence; canary error ratio at most 1.16 points above stable (99%)" in text


def _brute_log_e(nc: int, xc: int, ns: int, xs: int, margin: float) -> float:
    """The infimum over a fine grid of the null, with math.lgamma: an independent check."""

    def mixture(n: int, x: int) -> float:
        terms = [
            math.lgamma(a + x)
            + math.lgamma(b + n - x)
            - math.lgamma(a + b + n)
            - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
            for a, b in PRIOR
        ]
        top = max(terms)
        return top + math.log(sum(math.exp(t - top) for t in terms) / len(terms))

    def loglik(n: int, x: int, p: np.ndarray) -> np.ndarray:
        return x * np.log(p) + (n - x) * np.log1p(-p)

    ps = np.linspace(1e-9, 1 - margin - 1e-9, 400_001)
    pc = np.minimum(xc / nc if nc else 0.0, ps + margin).clip(1e-12, 1 - 1e-12)
    best = float((loglik(ns, xs, ps) + loglik(nc, xc, pc)).max())
    return mixture(nc, xc) + mixture(ns, xs) - best


@pytest.mark.parametrize(
    "counts",
    [
        (100, 30, 1900, 10, 0.005),
        (2000, 40, 38000, 190, 0.005),
        (50, 0, 900, 4, 0.0),
        (300, 12, 300, 2, 0.01),
        (7, 3, 140, 1, 0.005),
    ],
)
def test_the_e_value_matches_a_brute_force_infimum(
    counts: tuple[int, int, int, int, float],
) -> None:
    assert float(log_e_value(*counts)) == pytest.approx(_brute_log_e(*counts), abs=2e-3)


@pytest.mark.parametrize(
    ("requests", "hits", "limit", "fires"),
    [(10, 5, 0.01, True), (100, 1, 0.01, False), (2000, 40, 0.01, True), (0, 0, 0.01, False)],
)
def test_absolute_guard_rail(requests: int, hits: int, limit: float, fires: bool) -> None:
    assert (float(log_e_above(requests, hits, limit)) >= math.log(20)) == fires


def _histogram(seconds: np.ndarray) -> list[float]:
    """Cumulative `le` bucket counts of latencies, as Prometheus exports them."""
    per_bucket = np.bincount(np.searchsorted(BOUNDS, seconds), minlength=len(BOUNDS))
    return [float(v) for v in np.cumsum(per_bucket)]


def test_latency_identical_histograms_show_no_evidence() -> None:
    seconds = np.random.default_rng(1).lognormal(math.log(0.02), 0.5, 20_000)
    same = _histogram(seconds)
    result = compare_latency(BOUNDS, same, same, alpha=0.05, ratio=1.5, margin=0.005)
    assert result.decision == "no evidence" and result.log_e < 0
    assert result.reference is not None and result.reference.stable_bound == 0.075  # its P99
    assert result.explain().endswith(
        "no evidence; share slower than 0.15s (canary) vs 0.075s (stable) -0.34 points "
        "(0/20000 canary, 69/20000 stable); canary's at least 0.18 points below stable's "
        "(95%, all pairs)"
    )


def test_latency_slow_tail_is_a_regression_and_says_where() -> None:
    rng = np.random.default_rng(2)
    stable = rng.lognormal(math.log(0.02), 0.5, 9500)
    canary = rng.lognormal(math.log(0.02), 0.5, 500)
    canary[:25] *= 10  # 5% of requests ten times slower
    result = compare_latency(
        BOUNDS, _histogram(canary), _histogram(stable), alpha=0.05, ratio=1.5, margin=0.005
    )
    assert result.decision == "regression"
    worst = result.worst
    assert worst is not None and worst.canary_bound >= 1.5 * worst.stable_bound * (1 - 1e-9)
    assert worst.stable_bound >= 0.075  # past stable's P99
    assert result.explain().startswith("latency e-value")


def test_latency_pairs_follow_ratio_and_floor() -> None:
    flat = [0.0] * len(BOUNDS)
    result = compare_latency(BOUNDS, flat, flat, alpha=0.05, ratio=1.5, margin=0, floor=0.05)
    pairs = [(p.stable_bound, p.canary_bound) for p in result.pairs]
    assert (0.1, 0.15) in pairs and (0.1, 0.2) not in pairs and (5.0, 7.5) in pairs
    assert min(c for _, c in pairs) >= 0.05 and all(c >= 1.5 * s * (1 - 1e-9) for s, c in pairs)
    with pytest.raises(ValueError, match="Inf"):
        compare_latency((0.1, 0.2), (1, 2), (1, 2), alpha=0.05, ratio=1.5, margin=0)
    with pytest.raises(ValueError, match="same length"):
        compare_latency(BOUNDS, flat[1:], flat, alpha=0.05, ratio=1.5, margin=0)


# --- simulations -------------------------------------------------------------------------
#
# RUNS seeded rollouts each, looked at every EVERY requests (both versions together) with
# the counts since the start. Per look, the canary's requests are binomial with the
# split, and their errors (or histogram buckets) binomial (multinomial) with the version's
# rate (bucket probabilities): the same counts as drawing every request and bucketing its
# latency, without drawing every request. Looks go in chunks, dropping the runs already
# decided, and looks where every share is within the margin are skipped: their log E <= 0.


@dataclass(frozen=True)
class Outcome:
    detected: float  # share of runs rolled back
    median_requests: float  # total requests (both versions) at the detecting look
    p95_requests: float
    max_requests: float


def _scan(fires: Callable[[np.ndarray, slice], np.ndarray], looks: int, every: int) -> Outcome:
    """Each run's first look where `fires(runs, looks)` (bool, runs x looks) holds."""
    first = np.full(RUNS, -1)
    for start in range(0, looks, 20):
        active = np.flatnonzero(first < 0)
        if not len(active):
            break
        hits = fires(active, slice(start, min(start + 20, looks)))
        found = hits.any(axis=1)
        first[active[found]] = start + hits[found].argmax(axis=1)
    requests = (first[first >= 0] + 1) * every
    if not len(requests):
        return Outcome(0.0, math.nan, math.nan, math.nan)
    return Outcome(
        float((first >= 0).mean()),
        float(np.median(requests)),
        float(np.quantile(requests, 0.95)),
        float(requests.max()),
    )


def simulate_errors(
    canary_rate: float,
    stable_rate: float,
    share: float,
    total: int,
    margin: float,
    alpha: float,
    seed: int,
    every: int = EVERY,
) -> Outcome:
    """Error ratios `canary_rate` and `stable_rate`, `share` of the requests to the canary."""
    rng = np.random.default_rng(seed)
    nc = rng.binomial(every, share, size=(RUNS, total // every))
    xc, xs = rng.binomial(nc, canary_rate), rng.binomial(every - nc, stable_rate)
    counts = [np.cumsum(a, axis=1).astype(float) for a in (nc, xc, every - nc, xs)]

    def fires(runs: np.ndarray, looks: slice) -> np.ndarray:
        nc, xc, ns, xs = (c[runs, looks] for c in counts)
        outside = xc / np.maximum(nc, 1) - xs / ns > margin
        hits = np.zeros(outside.shape, dtype=bool)
        picked = (nc[outside], xc[outside], ns[outside], xs[outside])
        hits[outside] = _each(log_e_value, *picked, margin) >= math.log(1 / alpha)
        return hits

    return _scan(fires, total // every, every)


def _lognormal_buckets(median: float, sigma: float) -> np.ndarray:
    """The probability of each `le` bucket (the last is +Inf) for lognormal latencies."""
    cdf = [
        0.5 * (1 + math.erf(math.log(b / median) / (sigma * math.sqrt(2)))) for b in LATENCY_BUCKETS
    ]
    return np.diff([0.0, *cdf, 1.0])


STABLE_LATENCY = _lognormal_buckets(0.02, 0.5)  # median 20 ms, P99 64 ms
CANARY_LATENCY = {
    "same": STABLE_LATENCY,
    "slower": _lognormal_buckets(0.024, 0.5),  # every request 1.2x: within the ratio 1.5
    "p99x3": _lognormal_buckets(0.02, 0.5 + math.log(3) / 2.3263),  # P99 192 ms
    "tail": 0.95 * STABLE_LATENCY + 0.05 * _lognormal_buckets(0.2, 0.5),  # 5% 10x slower
}


def simulate_latency(
    canary: str,
    share: float,
    total: int,
    alpha: float,
    seed: int,
    ratio: float = 1.5,
    margin: float = 0.0,
    floor: float = 0.05,
) -> Outcome:
    """Stable's latency lognormal, median 20 ms, P99 64 ms; the canary's one of
    CANARY_LATENCY; both bucketed into LATENCY_BUCKETS and tested as compare_latency
    does (the average of the pairs' e-values)."""
    rng = np.random.default_rng(seed)
    looks = total // EVERY
    nc = rng.binomial(EVERY, share, size=(RUNS, looks))
    hc = rng.multinomial(nc, CANARY_LATENCY[canary]).cumsum(axis=1).cumsum(axis=2)
    hs = rng.multinomial(EVERY - nc, STABLE_LATENCY).cumsum(axis=1).cumsum(axis=2)
    flat = [0.0] * len(BOUNDS)
    pairs = compare_latency(BOUNDS, flat, flat, alpha=alpha, ratio=ratio, margin=0, floor=floor)
    where = {b: k for k, b in enumerate(BOUNDS)}
    i = np.array([where[p.stable_bound] for p in pairs.pairs])
    j = np.array([where[p.canary_bound] for p in pairs.pairs])

    def fires(runs: np.ndarray, looks: slice) -> np.ndarray:
        c, s = hc[runs, looks].astype(float), hs[runs, looks].astype(float)
        nc, ns = c[..., -1:], s[..., -1:]
        xc, xs = nc - c[..., j], ns - s[..., i]
        outside = (xc / np.maximum(nc, 1) - xs / ns > margin).any(axis=2)
        hits = np.zeros(outside.shape, dtype=bool)
        counts = (np.broadcast_to(nc, xc.shape), xc, np.broadcast_to(ns, xs.shape), xs)
        logs = _each(log_e_value, *(a[outside] for a in counts), margin)
        top = logs.max(axis=1, keepdims=True)
        hits[outside] = top[:, 0] + np.log(np.exp(logs - top).mean(axis=1)) >= math.log(1 / alpha)
        return hits

    return _scan(fires, looks, EVERY)


SPLITS = (0.05, 0.10, 0.50)
HEALTHY_ALPHA = 0.05
SLACK = 3 * math.sqrt(HEALTHY_ALPHA * (1 - HEALTHY_ALPHA) / RUNS)  # three standard errors


@pytest.mark.parametrize("share", SPLITS)
@pytest.mark.parametrize("margin", [0.0, 0.005])
def test_healthy_errors_rarely_roll_back(share: float, margin: float) -> None:
    outcome = simulate_errors(0.005, 0.005, share, 100_000, margin, HEALTHY_ALPHA, seed=11)
    assert outcome.detected <= HEALTHY_ALPHA + SLACK


# total requests looked at, per split: enough for 95% of the 2% regressions
REGRESSION_TOTAL = {0.05: 130_000, 0.10: 70_000, 0.50: 20_000}


@pytest.mark.parametrize("share", SPLITS)
def test_two_percent_over_half_a_percent_is_found(share: float) -> None:
    outcome = simulate_errors(0.02, 0.005, share, REGRESSION_TOTAL[share], 0.005, 0.01, seed=12)
    assert outcome.detected >= 0.95


@pytest.mark.parametrize("share", SPLITS)
def test_thirty_percent_errors_are_found_within_dozens_of_canary_requests(share: float) -> None:
    outcome = simulate_errors(0.30, 0.005, share, 2_000, 0.005, 0.01, seed=13, every=10)
    assert outcome.detected == 1.0
    assert outcome.p95_requests * share <= 80  # canary requests


def test_thirty_percent_errors_trip_the_absolute_guard_rail_sooner() -> None:
    rng = np.random.default_rng(15)
    errors = np.cumsum(rng.random((RUNS, 40)) < 0.30, axis=1)  # one canary request per look
    fires = _each(log_e_above, np.arange(1, 41), errors, 0.01) >= math.log(100)
    assert fires.any(axis=1).all()
    canary_requests = fires.argmax(axis=1) + 1
    assert np.median(canary_requests) <= 10 and np.quantile(canary_requests, 0.95) <= 25


def test_the_confidence_bound_covers_the_truth_at_every_look() -> None:
    rng = np.random.default_rng(14)
    nc = rng.binomial(1000, 0.1, size=(200, 40))
    xc, xs = rng.binomial(nc, 0.02), rng.binomial(1000 - nc, 0.005)
    counts = [np.cumsum(a, axis=1).astype(float) for a in (nc, xc, 1000 - nc, xs)]
    missed = (_each(upper_bound, *counts, 0.05) < 0.015).any(axis=1).mean()
    assert missed <= 0.05


@pytest.mark.parametrize("share", [0.05, 0.50])
@pytest.mark.parametrize("canary", ["same", "slower"])
def test_healthy_latency_rarely_rolls_back(canary: str, share: float) -> None:
    outcome = simulate_latency(canary, share, 20_000, HEALTHY_ALPHA, seed=21)
    assert outcome.detected <= HEALTHY_ALPHA + SLACK


LATENCY_TOTAL = {0.05: 30_000, 0.50: 6_000}


@pytest.mark.parametrize("share", [0.05, 0.50])
@pytest.mark.parametrize("canary", ["p99x3", "tail"])
def test_latency_regressions_are_always_found(canary: str, share: float) -> None:
    outcome = simulate_latency(canary, share, LATENCY_TOTAL[share], 0.01, seed=22)
    assert outcome.detected == 1.0


def main() -> None:
    """The simulation table for docs/sequential-tests.md (more cases than the tests)."""
    rows: list[tuple[str, float, float, Outcome]] = []
    errors = [  # name, canary error ratio, total requests, margin, seed, look every
        ("0.5% both, margin 0", 0.005, 100_000, 0.0, 11, EVERY),
        ("0.5% both, margin 0.5 pt", 0.005, 100_000, 0.005, 11, EVERY),
        ("1% vs 0.5%, margin 0.5 pt", 0.01, 100_000, 0.005, 16, EVERY),
        ("2% vs 0.5%, margin 0.5 pt", 0.02, 260_000, 0.005, 12, EVERY),
        ("30% vs 0.5%, margin 0.5 pt", 0.3, 2000, 0.005, 13, 10),
    ]
    for share in SPLITS:
        for alpha in (0.05, 0.01):
            for name, rate, total, margin, seed, every in errors:
                outcome = simulate_errors(rate, 0.005, share, total, margin, alpha, seed, every)
                rows.append((f"errors {name}", share, alpha, outcome))
            for canary in CANARY_LATENCY:
                total = 60_000 if share < 0.5 else 12_000
                outcome = simulate_latency(canary, share, total, alpha, 21)
                rows.append((f"latency {canary}", share, alpha, outcome))
    print("| case | canary share | alpha | rolled back | median | p95 | max |")
    print("|---|---|---|---|---|---|---|")
    for name, share, alpha, o in rows:
        when = [o.median_requests, o.p95_requests, o.max_requests]
        cells = " | ".join("–" if math.isnan(v) else f"{v:,.0f}" for v in when)
        print(f"| {name} | {share:.0%} | {alpha:g} | {o.detected:.1%} | {cells} |")


if __name__ == "__main__":
    main()
