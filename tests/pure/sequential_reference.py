"""The numpy implementation of modelcanary.rollout.sequential before the closed form (issue
26), kept as the reference that tests/pure/test_sequential_reference.py checks the closed
form against; `_line_maximiser` and `line_slack` were split out of `_best_on_line` to say
how precise it is. Its own description follows.

Anytime-valid canary-versus-stable tests on counts, safe to look at on every tick.

Is the share of canary requests that "hit" (failed, or were slower than a threshold) more
than `margin` above stable's? Each version's requests are Bernoulli trials with rates `p_c`
and `p_s`; the null is `p_c <= p_s + margin`. After Lindon, Sanden and Shirikian (KDD 2022),
with a conjugate mixture: for one version with `x` hits in `n` requests, the Beta-mixture
likelihood ratio `M(p) = ∫ q^x (1-q)^(n-x) dπ(q) / (p^x (1-p)^(n-x))` is a nonnegative
martingale with mean 1 if `p` is the true rate; the product of the canary's and stable's
is one too, however requests are routed (the split may change, or be unknown). Stable's
rate is a nuisance, so the e-value is the smallest product over the null,

    E = inf { M_c(p_c) M_s(p_s) : p_c <= p_s + margin },

which is below every null point's martingale and so an e-process: with cumulative counts
checked as often as one likes, P(E ever >= 1/alpha) <= alpha (Ville's inequality). The
same family gives the confidence sequence {d : inf over p_c - p_s = d of M_c M_s < 1/alpha}
for d = p_c - p_s; its upper end is the regression ruled out so far, at 1 - alpha.

Lindon et al. condition on the total count to remove the nuisance, which tests a ratio of
rates and needs the traffic split; here the margin is in absolute points and the split only
nominal, so the nuisance is profiled out: one bisection on the null's boundary, the
log-likelihood being concave. The prior π mixes Jeffreys' Beta(1/2, 1/2) with exponential-
like Betas of means 1e-4 to 0.3, as shares range from 0.01% to tens of percent: fewer nats
lost at small rates than with Jeffreys' alone. Pure numpy and math, deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Decision = Literal["regression", "no evidence"]
Floats = NDArray[np.float64]

# (a, b) of the prior's Beta components, equally weighted.
PRIOR = ((0.5, 0.5), *((1.0, 10 ** (k / 2) - 1.0) for k in range(1, 9)))
_PRIOR_LBETA = [math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b) for a, b in PRIOR]
_ITERATIONS = 32  # bisection steps in [0, 1]: 2e-10, and midpoints stay off the ends
_BOUND_ITERATIONS = 20  # for the confidence bound: 1e-6, a ten-thousandth of a point


def _lgamma(x: Floats) -> Floats:
    """log Γ(x) for x > 0: shift to x >= 10, then Stirling's series (error < 1e-11)."""
    small = x < 10
    low, rising = np.where(small, x, 1.0), np.ones_like(x)
    for k in range(10):
        rising *= low + k
    z = np.where(small, x + 10, x)
    w = 1.0 / (z * z)
    series = (1 / 12 + w * (-1 / 360 + w * (1 / 1260 - w / 1680))) / z
    shift = np.where(small, np.log(rising), 0.0)
    return (z - 0.5) * np.log(z) - z + 0.5 * math.log(2 * math.pi) + series - shift


def _loglik(n: Floats, x: Floats, p: Floats) -> Floats:
    """x log p + (n - x) log(1 - p), a zero count contributing 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        hits: Floats = np.where(x > 0, x * np.log(p), 0.0)
        return hits + np.where(n > x, (n - x) * np.log1p(-p), 0.0)


def _log_mixture(n: Floats, x: Floats) -> Floats:
    """log ∫ q^x (1-q)^(n-x) dπ(q) for the mixture prior."""
    terms = np.stack(
        [
            _lgamma(a + x) + _lgamma(b + n - x) - _lgamma(a + b + n) - prior
            for (a, b), prior in zip(PRIOR, _PRIOR_LBETA, strict=True)
        ]
    )
    top: Floats = terms.max(axis=0)
    mean: Floats = np.exp(terms - top).mean(axis=0)
    return top + np.log(mean)


def _line_maximiser(
    nc: Floats, xc: Floats, ns: Floats, xs: Floats, d: Floats | float
) -> tuple[Floats, Floats]:
    """The bisection's last midpoint for the maximum over p_s on the line, and half its last
    bracket."""
    fc, fs = nc - xc, ns - xs
    lo, hi = np.maximum(0.0, -d) + 0 * nc, np.minimum(1.0, 1.0 - d) + 0 * nc
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 on an empty version: nan
        for _ in range(_ITERATIONS):
            p = (lo + hi) / 2
            rising = -xc / (p + d) + fc / (1 - p - d) - xs / p + fs / (1 - p) > 0
            lo, hi = np.where(rising, lo, p), np.where(rising, p, hi)
    return (lo + hi) / 2, (hi - lo) / 2


def _best_on_line(nc: Floats, xc: Floats, ns: Floats, xs: Floats, d: Floats | float) -> Floats:
    """max over p_s of the joint log-likelihood with p_c = p_s + d (concave in p_s)."""
    p, _ = _line_maximiser(nc, xc, ns, xs, d)
    return _loglik(nc, xc, p + d) + _loglik(ns, xs, p)


def line_slack(nc: Floats, xc: Floats, ns: Floats, xs: Floats, d: Floats | float) -> Floats:
    """At most how much log-likelihood `_best_on_line` misses (added for the tests): the
    bisection stops within half a bracket of the maximum, and by concavity the likelihood
    there is at most the slope at its point times that distance above the point's."""
    p, half = _line_maximiser(nc, xc, ns, xs, d)
    q = p + d
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sum(  # each count over its rate's distance from 0 (hits) or 1 (misses)
            np.where(count > 0, count / where, 0.0)
            for count, where in ((xc, q), (nc - xc, q - 1), (xs, p), (ns - xs, p - 1))
        )
    return np.abs(slope) * half


def _counts(*values: ArrayLike) -> tuple[Floats, ...]:
    """(requests, hits) pairs as float arrays, hits clipped to [0, requests]: counts from
    Prometheus' increase() are extrapolated and may stray."""
    arrays = [np.array(a, dtype=np.float64) for a in np.broadcast_arrays(*values)]
    for k in range(0, len(arrays), 2):
        arrays[k] = np.maximum(arrays[k], 0.0)
        arrays[k + 1] = np.clip(arrays[k + 1], 0.0, arrays[k])
    return tuple(arrays)


def _rate(n: Floats, x: Floats) -> Floats:
    return np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.0)


def log_e_value(
    canary_requests: ArrayLike,
    canary_hits: ArrayLike,
    stable_requests: ArrayLike,
    stable_hits: ArrayLike,
    margin: float,
) -> Floats:
    """log E against `p_c <= p_s + margin`, elementwise. At most 0 when the observed
    difference is within the margin; a regression at level alpha when >= log(1/alpha)."""
    nc, xc, ns, xs = _counts(canary_requests, canary_hits, stable_requests, stable_hits)
    pc, ps = _rate(nc, xc), _rate(ns, xs)
    best = _loglik(nc, xc, pc) + _loglik(ns, xs, ps)
    outside = pc - ps > margin
    if outside.any():  # else the infimum is at the observed rates
        best = np.where(outside, _best_on_line(nc, xc, ns, xs, margin), best)
    return _log_mixture(nc, xc) + _log_mixture(ns, xs) - best


def upper_bound(
    canary_requests: ArrayLike,
    canary_hits: ArrayLike,
    stable_requests: ArrayLike,
    stable_hits: ArrayLike,
    alpha: float,
) -> Floats:
    """Anytime-valid upper confidence bound on p_c - p_s at 1 - alpha, elementwise."""
    nc, xc, ns, xs = _counts(canary_requests, canary_hits, stable_requests, stable_hits)
    level, mixture = math.log(1 / alpha), _log_mixture(nc, xc) + _log_mixture(ns, xs)
    lo, hi = _rate(nc, xc) - _rate(ns, xs), np.ones_like(nc)
    for _ in range(_BOUND_ITERATIONS):
        d = (lo + hi) / 2
        out = mixture - _best_on_line(nc, xc, ns, xs, d) >= level
        lo, hi = np.where(out, lo, d), np.where(out, d, hi)
    return hi


def log_e_above(requests: ArrayLike, hits: ArrayLike, limit: float) -> Floats:
    """log E against `p <= limit` for one version alone (an absolute guard rail)."""
    n, x = _counts(requests, hits)
    return _log_mixture(n, x) - _loglik(n, x, np.minimum(_rate(n, x), limit))


@dataclass(frozen=True)
class Comparison:
    """A canary-versus-stable test of shares, with the counts it rests on."""

    canary_requests: float
    canary_hits: float
    stable_requests: float
    stable_hits: float
    margin: float
    alpha: float
    log_e: float
    upper: float  # p_c - p_s is at most this, at 1 - alpha, anytime-valid

    @property
    def e_value(self) -> float:
        return math.exp(min(self.log_e, 700.0))

    @property
    def decision(self) -> Decision:
        return "regression" if self.log_e >= math.log(1 / self.alpha) else "no evidence"

    @property
    def difference(self) -> float:
        (xc, nc), (xs, ns) = self._pairs()
        return (xc / nc if nc else 0.0) - (xs / ns if ns else 0.0)

    def counts(self) -> str:
        c, s = (f"{h:g}/{n:g}" for h, n in self._pairs())
        return f"{self.difference * 100:+.2f} points ({c} canary, {s} stable)"

    def _pairs(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (self.canary_hits, self.canary_requests), (self.stable_hits, self.stable_requests)

    def explain(self, what: str = "error ratio") -> str:
        """E.g. `... canary error ratio at most 0.41 points above stable (95%)`."""
        return (
            f"{what} {self.counts()}; e-value {self.e_value:.3g}, regression at "
            f"{1 / self.alpha:g} beyond a {self.margin * 100:g}-point margin: {self.decision}; "
            f"canary {what} {_bound(self.upper)} stable ({(1 - self.alpha) * 100:g}%)"
        )


def compare(
    canary_requests: float,
    canary_errors: float,
    stable_requests: float,
    stable_errors: float,
    *,
    alpha: float,
    margin: float,
) -> Comparison:
    """The error test on counts accumulated since the step (or rollout) began."""
    _check(alpha, margin)
    nc, xc, ns, xs = _counts(canary_requests, canary_errors, stable_requests, stable_errors)
    log_e, upper = log_e_value(nc, xc, ns, xs, margin), upper_bound(nc, xc, ns, xs, alpha)
    counts = (float(nc), float(xc), float(ns), float(xs))
    return Comparison(*counts, margin, alpha, float(log_e), float(upper))


def _bound(upper: float) -> str:
    above = f"at most {upper * 100:.2f} points above"
    return above if upper >= 0 else f"at least {-upper * 100:.2f} points below"


def _check(alpha: float, margin: float) -> None:
    if not 0 < alpha < 1 or not 0 <= margin < 1:
        raise ValueError(f"alpha must be in (0, 1) and margin in [0, 1), not {alpha}, {margin}")


@dataclass(frozen=True)
class TailPair:
    """Canary requests slower than `canary_bound` against stable's slower than `stable_bound`."""

    stable_bound: float
    canary_bound: float
    test: Comparison  # at alpha/K for K pairs: its `upper` (NaN unless shown) holds for all


# From here on the same as modelcanary/rollout/sequential.py on purpose: the reference keeps
# its own copy of what the closed form did not change, so that it stands alone.
@dataclass(frozen=True)
class LatencyComparison:
    """The latency test: an average of e-values over fixed pairs of bucket bounds."""

    log_e: float
    alpha: float
    pairs: tuple[TailPair, ...]
    reference: TailPair | None  # the pair at stable's observed quantile bucket

    @property
    def decision(self) -> Decision:
        return "regression" if self.log_e >= math.log(1 / self.alpha) else "no evidence"

    @property
    def worst(self) -> TailPair | None:
        return max(self.pairs, key=lambda pair: pair.test.log_e, default=None)

    def explain(self) -> str:
        """The combined e-value, and the worst pair (on a regression) or stable's P99 pair."""
        shown = self.worst if self.decision == "regression" else self.reference
        head = (
            f"latency e-value {math.exp(min(self.log_e, 700.0)):.3g} over {len(self.pairs)} "
            f"bucket pairs, regression at {1 / self.alpha:g}: {self.decision}"
        )
        if shown is None:
            return head
        return (
            f"{head}; share slower than {shown.canary_bound:g}s (canary) vs "
            f"{shown.stable_bound:g}s (stable) {shown.test.counts()}; canary's "
            f"{_bound(shown.test.upper)} stable's ({(1 - self.alpha) * 100:g}%, all pairs)"
        )


def compare_latency(
    bounds: Sequence[float],
    canary_buckets: Sequence[float],
    stable_buckets: Sequence[float],
    *,
    alpha: float,
    ratio: float,
    margin: float = 0.0,
    floor: float = 0.0,
    quantile: float = 0.99,
) -> LatencyComparison:
    """The latency test on cumulative histogram buckets (Prometheus `le`, ending at +Inf)
    accumulated since the step began, the same bounds for both versions.

    If the canary is at most `ratio` times slower than stable (in distribution), then for
    bounds t_i and t_j >= ratio * t_i the canary's share above t_j is at most stable's
    above t_i. For every such pair (t_j the smallest bound that fits, t_j >= `floor`), the
    shares are compared as errors are, with `margin` (`ratio` is the practical margin: 0
    will do); the pairs are fixed by the bounds, not the data, so the average of their
    e-values is an e-process, and each pair's upper bound at alpha/K holds for all K pairs
    at once. A slow tail shows in the pairs past stable's P99; a uniform slowdown within
    `ratio` and identical distributions do not.
    """
    _check(alpha, margin)
    if ratio < 1 or len({len(bounds), len(canary_buckets), len(stable_buckets)}) != 1:
        raise ValueError("ratio must be at least 1, and bounds and buckets the same length")
    if not bounds or not math.isinf(bounds[-1]):
        raise ValueError("the last bucket bound must be +Inf (the total count)")
    index = [
        (i, j)
        for i, low in enumerate(bounds[:-1])
        for j in [next(k for k, high in enumerate(bounds) if high >= ratio * low * (1 - 1e-9))]
        if not math.isinf(bounds[j]) and bounds[j] >= floor
    ]
    if not index:
        return LatencyComparison(0.0, alpha, (), None)
    c, s = np.asarray(canary_buckets, np.float64), np.asarray(stable_buckets, np.float64)
    i, j = np.array([p[0] for p in index]), np.array([p[1] for p in index])
    nc, xc, ns, xs = _counts(c[-1], c[-1] - c[j], s[-1], s[-1] - s[i])
    logs, each = log_e_value(nc, xc, ns, xs, margin), alpha / len(index)
    at = next((k for k, q in enumerate(s) if q >= quantile * s[-1]), len(s) - 1)
    shown = [
        int(np.argmax(logs)),
        next((k for k, (a, _) in enumerate(index) if bounds[a] >= bounds[at]), len(index) - 1),
    ]
    # the bound is a bisection: computed for the pairs an explanation shows, not all
    uppers = np.full(len(index), np.nan)
    uppers[shown] = upper_bound(nc[shown], xc[shown], ns[shown], xs[shown], each)

    def compared(k: int) -> Comparison:
        counts = float(nc[k]), float(xc[k]), float(ns[k]), float(xs[k])
        return Comparison(*counts, margin, each, float(logs[k]), float(uppers[k]))

    pairs = tuple(TailPair(bounds[a], bounds[b], compared(k)) for k, (a, b) in enumerate(index))
    top = float(logs.max())
    log_e = top + math.log(float(np.exp(logs - top).mean()))
    return LatencyComparison(log_e, alpha, pairs, pairs[shown[1]])
