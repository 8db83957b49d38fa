"""The judge: what the canary served since the rollout began, against stable's, in a verdict.

Every check rests on counts accumulated since the canary's first step (each request
counted once) and on an anytime-valid sequential test (`sequential`), so it may be looked
at on every tick: a check fails only when the evidence of a regression reaches 1/alpha
(the spec's `alpha` shared among the tests), and a healthy canary passes with however
little traffic it gets. Each check carries the statistic (an e-value), its threshold, the
counts and what it rules out so far. Windowed P99s are shown beside them for people.

- `canary_ready`: the platform says the canary serves (inconclusive otherwise).
- `canary_traffic`: a canary holding weight that stopped receiving requests while stable
  kept serving (a crash, a broken route) fails once its missing share is unmistakable.
- `error_ratio`: the canary's error ratio above `errorRatio.max` (a guard rail).
- `error_ratio_above_stable`: above stable's by more than `errorRatio.maxAboveStable`.
- `latency_p99_s`: more than 1% of canary requests slower than `latencyP99.maxSeconds`.
- `latency_p99_ratio_to_stable`: slower than `maxRatioToStable` times stable, in any part
  of the distribution above `ratioFloorSeconds` (a slow tail as well as a slow median).
- `prediction_agreement`: while the rollout shadows (from before the first step on), the
  canary's top-1 answers agree with stable's on the same requests less often than
  `shadow.minAgreement`; inconclusive while the comparator reports nothing.
- `numeric_tolerance`: while the rollout shadows, for a model with numeric outputs: more
  than `shadow.numeric.maxOutside` of some numeric output's pairs differ from stable's by
  more than the tolerance the comparator applies (`shadow.numeric.atol` and `rtol`).
  The shadow comparison's share of alpha is split among its outputs (the top-1
  agreement, if the model classifies, and each numeric output).
- `input_drift`: while the rollout shadows, the live inputs' worst-feature PSI against
  stable's reference profile above `shadow.maxInputDrift` holds (inconclusive: not a
  verdict on the canary, a reason to look); skipped without a profile.
Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from modelcanary.rollout import sequential as seq
from modelcanary.rollout.evidence import Evidence
from modelcanary.rollout.ports import Counts, InputDrift, Observations, ShadowCounts
from modelcanary.rollout.spec import RolloutSpec

Result = Literal["pass", "fail", "inconclusive", "skipped"]
SLOW_SHARE = 0.01  # of canary requests allowed above latencyP99.maxSeconds: a P99
NONE_LOG = math.log(1e8)  # a silent canary fails when P(none | healthy) < 1e-8
SHADOW_CHECKS = ("prediction_agreement", "numeric_tolerance")  # the answers compared


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float
    samples: int
    result: Result
    detail: str = ""
    evidence: float | None = None  # the test's e-value; it fails at `evidence_limit`
    evidence_limit: float | None = None
    ruled_out: float | None = None  # the difference above stable ruled out so far (1 - alpha)


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]
    canary_samples: int = 0  # canary requests in the analysis window: is data arriving
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def result(self) -> Literal["pass", "fail", "inconclusive"]:
        results = {c.result for c in self.checks}
        if "fail" in results:
            return "fail"
        if "inconclusive" in results or not self.checks:
            return "inconclusive"
        return "pass"

    @property
    def has_data(self) -> bool:
        return self.canary_samples > 0

    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.result == "fail")

    def numbers(self) -> dict[str, float | int | str]:
        """The checks' values and e-values for history and notifications."""
        values: dict[str, float | int | str] = {"canary_requests": self.canary_samples}
        for check in self.checks:
            if check.value is not None:
                values[check.name] = round(check.value, 6)
            if check.evidence is not None:
                values[f"{check.name}_evidence"] = float(f"{check.evidence:.3g}")
        return values


def judge(
    spec: RolloutSpec,
    seen: Observations,
    evidence: Evidence | None = None,
    weight: int = 0,
    shadow: ShadowCounts | Literal["off"] | None = "off",
) -> Verdict:
    """Every check of the spec's analysis; `evidence` is None before the first step;
    `shadow` the comparator's pairs since the shadow comparison began (None: no data),
    "off" when the rollout does not shadow."""
    canary, stable = seen.canary, seen.stable
    window = int(canary.requests) if canary else 0
    ready = seen.canary_ready
    not_ready = "" if ready else "the canary version is not ready"
    result: Result = "pass" if ready else "inconclusive"
    checks = [Check("canary_ready", 1.0 if ready else 0.0, 1.0, 1, result, not_ready)]
    tests = _Tests(spec, shadowing=shadow != "off")
    p99 = canary.p99_s if canary else None
    ratio = p99 / stable.p99_s if p99 is not None and stable and stable.p99_s else None
    if evidence is None or evidence.canary.requests <= 0 or seen.problem:
        why = "no canary requests yet"
        if seen.problem or evidence is None:
            why = f"no data: {seen.problem}" if seen.problem else "the rollout has not started"
        names = (
            "error_ratio",
            "error_ratio_above_stable",
            "latency_p99_s",
            "latency_p99_ratio_to_stable",
        )
        values = (None, None, p99, ratio)
        checks += [
            Check(name, value, tests.threshold(name), 0, "inconclusive", why)
            for name, value in zip(names, values, strict=True)
            if tests.enabled(name)
        ]
    else:
        if 0 < weight < 100:
            checks.append(_traffic(evidence, weight))
        checks += tests.run(evidence, p99, ratio)
    if shadow != "off":
        checks.append(tests.agreement(shadow))
        if shadow is not None and shadow.numeric:
            checks.append(tests.numeric(shadow))
        checks.append(_drift(spec, seen.drift))
    problems = (seen.problem,) if seen.problem else ()
    return Verdict(tuple(checks), window, problems)


def _traffic(evidence: Evidence, weight: int) -> Check:
    """Fails a canary that stopped receiving requests: stable served so many requests while
    the canary's counters stood still that a canary taking its share would have received
    none of them with probability below 1e-8 (counted conservatively: evidence.py)."""
    share = weight / 100
    served = evidence.stable_since_canary
    expected = served * share / (1 - share)
    unmistakable = NONE_LOG * share / ((1 - share) * -math.log1p(-share))
    samples = int(evidence.canary.requests)
    if served * -math.log1p(-share) < NONE_LOG:
        return Check("canary_traffic", expected, unmistakable, samples, "pass")
    why = (
        f"the canary received none of the {expected:.0f} requests its {weight}% share implies "
        f"while stable served {served:.0f}: it stopped answering"
    )
    return Check("canary_traffic", expected, unmistakable, samples, "fail", why)


def _drift(spec: RolloutSpec, drift: InputDrift | None) -> Check:
    """The live inputs against stable's reference profile: drifted inputs hold."""
    limit, least, name = spec.shadow.max_input_drift, spec.shadow.min_drift_samples, "input_drift"
    if drift is None:
        return Check(name, None, limit, 0, "skipped", "no input profile scored")
    samples = int(drift.samples)
    seen = f"PSI {drift.psi:.3f} on {drift.feature!r} over {samples} live samples"
    if samples < least:
        return Check(name, drift.psi, limit, samples, "pass", f"{seen}; judged from {least}")
    if drift.psi > limit:
        why = f"live inputs drifted from stable's profile: {seen}, above {limit:g}"
        return Check(name, drift.psi, limit, samples, "inconclusive", why)
    return Check(name, drift.psi, limit, samples, "pass", seen)


class _Tests:
    """The spec's sequential tests, sharing `alpha` equally (a union bound)."""

    def __init__(self, spec: RolloutSpec, shadowing: bool) -> None:
        analysis = spec.analysis
        self.errors, self.latency = analysis.error_ratio, analysis.latency_p99
        self.on = {
            "error_ratio": True,
            "error_ratio_above_stable": self.errors.max_above_stable is not None,
            "latency_p99_s": True,
            "latency_p99_ratio_to_stable": self.latency.max_ratio_to_stable is not None,
            "prediction_agreement": shadowing,
        }
        self.alpha = analysis.alpha / sum(self.on.values())
        self.shadow = spec.shadow

    def enabled(self, name: str) -> bool:
        return self.on[name]

    def threshold(self, name: str) -> float:
        return {
            "error_ratio": self.errors.max,
            "error_ratio_above_stable": self.errors.max_above_stable or 0.0,
            "latency_p99_s": self.latency.max_seconds,
            "latency_p99_ratio_to_stable": self.latency.max_ratio_to_stable or 0.0,
        }[name]

    def run(self, evidence: Evidence, p99: float | None, ratio: float | None) -> list[Check]:
        canary, stable = evidence.canary, evidence.stable
        checks = [self._guard_errors(canary)]
        if self.errors.max_above_stable is not None:
            checks.append(self._versus_stable_errors(canary, stable))
        checks.append(self._guard_latency(canary, p99))
        if self.latency.max_ratio_to_stable is not None:
            checks.append(self._versus_stable_latency(canary, stable, ratio))
        return checks

    def agreement(self, since: ShadowCounts | None) -> Check:
        """The canary's top-1 agreement with stable on the pairs compared so far: fails on
        evidence that it disagrees more often than 1 - minAgreement."""
        floor, name = self.shadow.min_agreement, "prediction_agreement"
        if since is None:
            return Check(name, None, floor, 0, "inconclusive", "no data from the shadow comparator")
        if not since.classifies:
            return Check(name, None, floor, 0, "skipped", "no classification output to compare")
        pairs = since.pairs
        if pairs <= 0:
            why = (
                "no classification output to compare"
                if since.compared > 0
                else "no pairs compared yet"
            )
            return Check(name, None, floor, 0, "pass", why)
        disagreeing = pairs - since.agreeing
        log_e = float(seq.log_e_above(pairs, disagreeing, 1 - floor))
        result, e, bound = self._decided(log_e, _outputs(since))
        share = since.agreeing / pairs
        detail = (
            f"the canary agrees with stable on {since.agreeing:g} of {pairs:g} pairs "
            f"({share:.1%}); e-value {e:.3g} that it agrees on less than {floor:.0%}, "
            f"rollback at {bound:g}"
        )
        return Check(name, share, floor, int(pairs), result, detail, e, bound)

    def numeric(self, since: ShadowCounts) -> Check:
        """Each numeric output's pairs outside the tolerance: fails on evidence that more
        than `maxOutside` of some output's pairs are; shows the output with most evidence."""
        limit, name = self.shadow.numeric.max_outside, "numeric_tolerance"
        tested = [
            (float(seq.log_e_above(n.pairs, n.pairs - n.within, limit)), n) for n in since.numeric
        ]
        samples = int(min(n.pairs for n in since.numeric))
        log_e, worst = max(tested, key=lambda t: (t[0], t[1].pairs - t[1].within))
        if all(n.pairs <= 0 for n in since.numeric):
            return Check(name, None, limit, 0, "pass", "no pairs compared yet")
        result, e, bound = self._decided(log_e, _outputs(since))
        outside = worst.pairs - worst.within
        share = outside / worst.pairs
        detail = (
            f"{outside:g} of {worst.pairs:g} pairs of output {worst.output!r} differ from "
            f"stable's beyond the tolerance ({share:.1%}); e-value {e:.3g} that more than "
            f"{limit:.0%} do, rollback at {bound:g}"
        )
        if len(since.numeric) > 1:
            detail += f" (the worst of {len(since.numeric)} numeric outputs)"
        return Check(name, share, limit, samples, result, detail, e, bound)

    def _decided(self, log_e: float, among: int = 1) -> tuple[Result, float, float]:
        """The test's verdict at its share of alpha, split `among` tests of one family."""
        limit = among / self.alpha
        return ("fail" if log_e >= math.log(limit) else "pass"), _exp(log_e), limit

    def _guard_errors(self, canary: Counts) -> Check:
        limit = self.errors.max
        log_e = float(seq.log_e_above(canary.requests, canary.errors, limit))
        result, e, bound = self._decided(log_e)
        observed = canary.errors / canary.requests
        detail = (
            f"{canary.errors:g} errors in {canary.requests:g} canary requests ({observed:.2%}); "
            f"e-value {e:.3g} that it exceeds {limit:.2%}, rollback at {bound:g}"
        )
        return Check("error_ratio", observed, limit, int(canary.requests), result, detail, e, bound)

    def _versus_stable_errors(self, canary: Counts, stable: Counts) -> Check:
        margin = self.errors.max_above_stable or 0.0
        name = "error_ratio_above_stable"
        if stable.requests <= 0:
            why = "stable served no requests since the rollout began"
            return Check(name, None, margin, int(canary.requests), "skipped", why)
        counts = canary.requests, canary.errors, stable.requests, stable.errors
        test = seq.compare(*counts, alpha=self.alpha, margin=margin)
        result, e, bound = self._decided(test.log_e)
        served, evidence = int(canary.requests), (e, bound, test.upper)
        return Check(name, test.difference, margin, served, result, test.explain(), *evidence)

    def _guard_latency(self, canary: Counts, p99: float | None) -> Check:
        limit = self.latency.max_seconds
        name = "latency_p99_s"
        above = next((n for le, n in canary.buckets if le >= limit * (1 - 1e-9)), None)
        if above is None:
            return Check(
                name,
                p99,
                limit,
                int(canary.requests),
                "skipped",
                "no latency histogram for the canary: the P99 alert rule guards it",
            )
        timed = canary.observed
        if timed <= 0:
            return Check(name, p99, limit, 0, "pass", "no timed canary requests yet")
        slow = timed - above
        log_e = float(seq.log_e_above(timed, slow, SLOW_SHARE))
        result, e, bound = self._decided(log_e)
        detail = (
            f"{slow:g} of {timed:g} timed canary requests slower than {limit:g}s "
            f"({slow / timed:.2%}); e-value {e:.3g} that more than "
            f"{SLOW_SHARE:.0%} are, rollback at {bound:g}"
        )
        return Check(name, p99, limit, int(timed), result, detail, e, bound)

    def _versus_stable_latency(self, canary: Counts, stable: Counts, ratio: float | None) -> Check:
        limit = self.latency.max_ratio_to_stable or 1.0
        name = "latency_p99_ratio_to_stable"
        bounds = [le for le, _ in canary.buckets]
        if not bounds or bounds != [le for le, _ in stable.buckets] or stable.observed <= 0:
            why = (
                "stable served no requests since the rollout began"
                if stable.requests <= 0
                else "no latency histograms to compare"
            )
            return Check(name, ratio, limit, int(canary.observed), "skipped", why)
        test = seq.compare_latency(
            [*bounds, math.inf],
            [*(n for _, n in canary.buckets), canary.observed],
            [*(n for _, n in stable.buckets), stable.observed],
            alpha=self.alpha,
            ratio=limit,
            floor=self.latency.ratio_floor_seconds,
        )
        result, e, bound = self._decided(test.log_e)
        return Check(name, ratio, limit, int(canary.observed), result, test.explain(), e, bound)


def _outputs(since: ShadowCounts) -> int:
    """How many tests share the shadow comparison's alpha: one per numeric output, and
    the top-1 agreement if the model classifies."""
    return len(since.numeric) + since.classifies


def _exp(log_e: float) -> float:
    return math.exp(min(log_e, 700.0))
