"""The rollout spec and the judge: pure, table-driven."""

from __future__ import annotations

import pytest

from modelcanary.durations import parse_duration
from modelcanary.errors import UsageError
from modelcanary.rollout.judge import judge
from modelcanary.rollout.ports import Observations, VersionStats
from modelcanary.rollout.spec import RolloutSpec, load_spec, parse_spec

EXAMPLE = """
model: digits
stable: {version: "1"}
canary: {version: "2"}
steps: [5, 10, 25, 50, 100]
interval: 30s
analysis:
  minRequests: 100
  failureLimit: 2
  errorRatio: {max: 0.01, maxAboveStable: 0.005}
  latencyP99: {maxSeconds: 0.5, maxRatioToStable: 1.5}
  alerts: {rollbackOn: [critical], holdOn: [warning]}
  noData: {after: 5m, action: pause}
progressDeadline: 30m
notify: {alertmanager: http://127.0.0.1:9093}
"""


def spec(**changes: object) -> RolloutSpec:
    data = {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}, **changes}
    return parse_spec(data, "test")


def test_the_documented_example_parses() -> None:
    parsed = load_spec(EXAMPLE, "canary.yaml")
    assert parsed.steps == (5, 10, 25, 50, 100) and parsed.interval_s == 30
    assert parsed.analysis.error_ratio.max_above_stable == 0.005
    assert parsed.analysis.latency_p99.max_ratio_to_stable == 1.5
    assert parsed.analysis.no_data.action == "pause" and parsed.no_data_after_s == 300
    assert (
        parsed.progress_deadline_s == 1800 and parsed.notify.alertmanager == "http://127.0.0.1:9093"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("2m5s", 125)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": [5, 10, 10, 100]}, "steps: steps must increase, got [5, 10, 10, 100]"),
        ({"steps": [5, 50]}, "steps: the last step must be 100 (full traffic), got 50"),
        ({"steps": [0, 100]}, "steps: each step is a canary percent from 1 to 100, not 0"),
        ({"steps": [*range(1, 21), 100]}, "steps: give at most 20 steps, got 21"),
        ({"stable": {"version": 2}, "canary": {"version": "2"}}, "canary.version must differ from stable.version (2)"),
        ({"interval": "soon"}, "interval: 'soon' is not a duration like 30s, 5m or 1h30m"),
        ({"analysis": {"minRequests": 0}}, "analysis.minRequests: Input should be greater than or equal to 1"),
        ({"analysis": {"errorRatio": {"max": 2}}}, "analysis.errorRatio.max: Input should be less than 1"),
        ({"analysis": {"noData": {"action": "promote"}}}, "analysis.noData.action: Input should be 'pause' or 'rollback'"),
        ({"analysis": {"latencyP99": {"maxRatioToStable": 0.5}}}, "analysis.latencyP99.maxRatioToStable: Input should be greater than 1"),
        ({"canary": {"version": "1"}}, "canary.version must differ from stable.version (1)"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_invalid_fields_are_reported_by_path(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as error:
        spec(**changes)
    assert str(error.value).startswith("test: ") and message in str(error.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(UsageError) as error:
        parse_spec(
            {"model": "", "stable": {}, "canary": {"version": 2}, "steps": [200]}, "canary.yaml"
        )
    text = str(error.value)
    assert "model: String should have at least 1 character" in text
    assert "stable.version: Field required" in text and "steps: each step" in text


def test_yaml_errors_name_the_file() -> None:
    with pytest.raises(UsageError, match=r"canary\.yaml: not valid YAML"):
        load_spec("model: [unclosed", "canary.yaml")


S = spec(analysis={"minRequests": 100})
HEALTHY_STABLE = VersionStats(requests=1000, errors=2, p99_s=0.100)


def results(seen: Observations, the_spec: RolloutSpec = S) -> dict[str, str]:
    return {c.name: c.result for c in judge(the_spec, seen).checks}


@pytest.mark.parametrize(
    ("canary", "expected", "verdict"),
    [
        # healthy canary with enough samples: every check passes
        (VersionStats(200, 1, 0.110), {"error_ratio": "pass", "error_ratio_above_stable": "pass", "latency_p99_s": "pass", "latency_p99_ratio_to_stable": "pass"}, "pass"),
        # exactly at the thresholds: pass (alerts fire above, not at)
        (VersionStats(1000, 10, 0.150), {"error_ratio": "pass", "error_ratio_above_stable": "fail", "latency_p99_ratio_to_stable": "pass"}, "fail"),
        # too many errors
        (VersionStats(200, 10, 0.110), {"error_ratio": "fail", "error_ratio_above_stable": "fail"}, "fail"),
        # slow in absolute terms and relative to stable
        (VersionStats(200, 0, 0.600), {"error_ratio": "pass", "latency_p99_s": "fail", "latency_p99_ratio_to_stable": "fail"}, "fail"),
        # too few samples: inconclusive, whatever the numbers say
        (VersionStats(99, 99, 9.0), {"error_ratio": "inconclusive", "latency_p99_s": "inconclusive", "error_ratio_above_stable": "inconclusive"}, "inconclusive"),
        # no data at all
        (None, {"error_ratio": "inconclusive", "latency_p99_s": "inconclusive"}, "inconclusive"),
        # no latency histogram
        (VersionStats(200, 0, None), {"error_ratio": "pass", "latency_p99_s": "inconclusive", "latency_p99_ratio_to_stable": "skipped"}, "inconclusive"),
    ],
    ids=["healthy", "at-thresholds", "errors", "slow", "few-samples", "no-data", "no-histogram"],
)  # fmt: skip
def test_checks(canary: VersionStats | None, expected: dict[str, str], verdict: str) -> None:
    seen = Observations(stable=HEALTHY_STABLE, canary=canary)
    got = results(seen)
    assert {k: got[k] for k in expected} == expected
    assert judge(S, seen).result == verdict


def test_at_the_last_step_stable_comparisons_are_skipped_not_passed() -> None:
    seen = Observations(stable=VersionStats(3, 0, 0.1), canary=VersionStats(500, 1, 0.12))
    verdict = judge(S, seen)
    skipped = [c for c in verdict.checks if c.result == "skipped"]
    assert {c.name for c in skipped} == {"error_ratio_above_stable", "latency_p99_ratio_to_stable"}
    assert all("too few requests" in c.detail for c in skipped)
    assert verdict.result == "pass"


def test_checks_carry_value_threshold_and_samples() -> None:
    verdict = judge(S, Observations(stable=HEALTHY_STABLE, canary=VersionStats(400, 8, 0.2)))
    check = next(c for c in verdict.checks if c.name == "error_ratio")
    assert (check.value, check.threshold, check.samples) == (0.02, 0.01, 400)
    above = next(c for c in verdict.checks if c.name == "error_ratio_above_stable")
    assert above.value == pytest.approx(0.018) and above.threshold == 0.005
    assert verdict.numbers()["canary_requests"] == 400


def test_a_canary_that_is_not_ready_is_inconclusive() -> None:
    verdict = judge(S, Observations(stable=HEALTHY_STABLE, canary=None, canary_ready=False))
    ready = verdict.checks[0]
    assert (ready.name, ready.result, ready.detail) == (
        "canary_ready",
        "inconclusive",
        "the canary version is not ready",
    )
    assert verdict.result == "inconclusive" and not verdict.has_data


def test_unreachable_prometheus_is_no_data_never_healthy() -> None:
    seen = Observations(
        stable=None, canary=None, problem="Prometheus at http://127.0.0.1:9090 is unreachable"
    )
    verdict = judge(S, seen)
    assert verdict.result == "inconclusive" and verdict.problems == (seen.problem,)


def test_comparisons_with_stable_can_be_turned_off() -> None:
    the_spec = spec(
        analysis={
            "errorRatio": {"max": 0.05, "maxAboveStable": None},
            "latencyP99": {"maxSeconds": 1, "maxRatioToStable": None},
        }
    )
    names = {
        c.name
        for c in judge(the_spec, Observations(HEALTHY_STABLE, VersionStats(200, 0, 0.1))).checks
    }
    assert names == {"canary_ready", "error_ratio", "latency_p99_s"}


def test_a_canary_under_the_latency_floor_is_not_compared_with_stable() -> None:
    """Ratios of millisecond P99s are noise: 12 ms against 2 ms is not a slow canary."""
    fast = Observations(stable=VersionStats(1000, 0, 0.002), canary=VersionStats(200, 0, 0.012))
    check = next(c for c in judge(S, fast).checks if c.name == "latency_p99_ratio_to_stable")
    assert check.result == "pass" and check.value == pytest.approx(6.0)
    assert "under the 0.1s floor" in check.detail
    no_floor = spec(analysis={"minRequests": 100, "latencyP99": {"ratioFloorSeconds": 0}})
    assert results(fast, no_floor)["latency_p99_ratio_to_stable"] == "fail"
    slow = Observations(stable=VersionStats(1000, 0, 0.04), canary=VersionStats(200, 0, 0.24))
    assert results(slow)["latency_p99_ratio_to_stable"] == "fail"
