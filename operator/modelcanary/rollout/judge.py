"""The judge: observations of the stable and the canary version in, a verdict out.

Each check carries its value, threshold, sample count and result. Too few samples is
inconclusive, never pass and never fail. A comparison with stable is skipped (and says
why) when stable itself has too few requests, as at the last step, where it gets none.
Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from modelcanary.rollout.ports import Observations, VersionStats
from modelcanary.rollout.spec import RolloutSpec

Result = Literal["pass", "fail", "inconclusive", "skipped"]


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float
    samples: int
    result: Result
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]
    canary_samples: int = 0
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
        """The checks' values for history and notifications."""
        values: dict[str, float | int | str] = {"canary_requests": self.canary_samples}
        for check in self.checks:
            if check.value is not None:
                values[check.name] = round(check.value, 6)
        return values


def judge(spec: RolloutSpec, seen: Observations) -> Verdict:
    """Every check of the spec's analysis against what was seen."""
    analysis = spec.analysis
    least = analysis.min_requests
    canary, stable = seen.canary, seen.stable
    samples = int(canary.requests) if canary else 0
    enough = canary is not None and samples >= least
    stable_enough = stable is not None and stable.requests >= least
    short = f"{samples} canary requests, {least} needed"
    checks = [
        Check(
            "canary_ready", 1.0 if seen.canary_ready else 0.0, 1.0, 1,
            "pass" if seen.canary_ready else "inconclusive",
            "" if seen.canary_ready else "the canary version is not ready",
        ),
    ]  # fmt: skip

    ratio_max = analysis.error_ratio.max
    if enough and canary is not None:
        value = canary.error_ratio
        checks.append(Check("error_ratio", value, ratio_max, samples, _above(value, ratio_max)))
    else:
        checks.append(Check("error_ratio", None, ratio_max, samples, "inconclusive", short))

    margin = analysis.error_ratio.max_above_stable
    if margin is not None:
        checks.append(
            _versus_stable(
                "error_ratio_above_stable",
                margin,
                canary,
                stable,
                enough,
                stable_enough,
                short,
                samples,
                lambda c, s: c.error_ratio - s.error_ratio,
            )
        )

    p99_max = analysis.latency_p99.max_seconds
    if enough and canary is not None and canary.p99_s is not None:
        checks.append(
            Check("latency_p99_s", canary.p99_s, p99_max, samples, _above(canary.p99_s, p99_max))
        )
    else:
        detail = short if not enough else "no latency histogram for the canary"
        checks.append(Check("latency_p99_s", None, p99_max, samples, "inconclusive", detail))

    ratio = analysis.latency_p99.max_ratio_to_stable
    if ratio is not None:

        def latency_ratio(c: VersionStats, s: VersionStats) -> float | None:
            if c.p99_s is None or not s.p99_s:
                return None
            return c.p99_s / s.p99_s

        check = _versus_stable(
            "latency_p99_ratio_to_stable",
            ratio,
            canary,
            stable,
            enough,
            stable_enough,
            short,
            samples,
            latency_ratio,
        )
        floor = analysis.latency_p99.ratio_floor_seconds
        if check.result == "fail" and canary is not None and (canary.p99_s or 0) < floor:
            check = replace(
                check, result="pass", detail=f"canary P99 under the {floor:g}s floor: not compared"
            )
        checks.append(check)

    problems = (seen.problem,) if seen.problem else ()
    return Verdict(tuple(checks), samples, problems)


def _above(value: float, threshold: float) -> Result:
    return "fail" if value > threshold else "pass"


def _versus_stable(
    name: str,
    threshold: float,
    canary: VersionStats | None,
    stable: VersionStats | None,
    enough: bool,
    stable_enough: bool,
    short: str,
    samples: int,
    compare: Callable[[VersionStats, VersionStats], float | None],
) -> Check:
    if not enough or canary is None:
        return Check(name, None, threshold, samples, "inconclusive", short)
    if not stable_enough or stable is None:
        return Check(
            name,
            None,
            threshold,
            samples,
            "skipped",
            "the stable version has too few requests to compare",
        )
    value = compare(canary, stable)
    if value is None:
        return Check(name, None, threshold, samples, "skipped", "no latency histogram to compare")
    return Check(name, value, threshold, samples, _above(value, threshold))
