"""The rollout spec and the judge: pure, table-driven."""

from __future__ import annotations

import pytest

from modelcanary.durations import parse_duration
from modelcanary.errors import UsageError
from modelcanary.rollout.evidence import Evidence
from modelcanary.rollout.judge import Verdict, judge
from modelcanary.rollout.ports import Counts, InputDrift, Observations, ShadowCounts, VersionStats
from modelcanary.rollout.spec import RolloutSpec, load_spec, parse_spec

EXAMPLE = """
model: digits
stable: {version: "1"}
canary: {version: "2"}
steps: [5, 10, 25, 50, 100]
interval: 30s
analysis:
  alpha: 0.01
  failureLimit: 0
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


# a table: one case per line, read across
# fmt: off
INVALID_FIELDS = [
    ({"steps": [5, 10, 10, 100]}, "steps: steps must increase, got [5, 10, 10, 100]"),
    ({"steps": [5, 50]}, "steps: the last step must be 100 (full traffic), got 50"),
    ({"steps": [0, 100]}, "steps: each step is a canary percent from 1 to 100, not 0"),
    ({"steps": [*range(1, 21), 100]}, "steps: give at most 20 steps, got 21"),
    ({"stable": {"version": 2}, "canary": {"version": "2"}}, "canary.version must differ from stable.version (2)"),
    ({"interval": "soon"}, "interval: 'soon' is not a duration like 30s, 5m or 1h30m"),
    ({"analysis": {"alpha": 0}}, "analysis.alpha: Input should be greater than 0"),
    ({"analysis": {"minRequests": 100}}, "analysis.minRequests: Extra inputs are not permitted"),
    ({"analysis": {"errorRatio": {"max": 2}}}, "analysis.errorRatio.max: Input should be less than 1"),
    ({"analysis": {"noData": {"action": "promote"}}}, "analysis.noData.action: Input should be 'pause' or 'rollback'"),
    ({"analysis": {"latencyP99": {"maxRatioToStable": 0.5}}}, "analysis.latencyP99.maxRatioToStable: Input should be greater than 1"),
    ({"canary": {"version": "1"}}, "canary.version must differ from stable.version (1)"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
]
# fmt: on


@pytest.mark.parametrize(("changes", "message"), INVALID_FIELDS)
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


S = spec()
BOUNDS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def counts(requests: float, errors: float, slower: dict[float, float] | None = None) -> Counts:
    """Cumulative counters; `slower` maps a bound to the requests slower than it."""
    slow = slower or {}
    buckets = tuple(
        (le, requests - max((n for b, n in slow.items() if b >= le), default=0.0)) for le in BOUNDS
    )
    return Counts(requests, errors, buckets, requests)


def evidence(canary: Counts, stable: Counts, stalled: float = 0.0) -> Evidence:
    return Evidence(stable, canary, stable_since_canary=stalled)


def results(verdict_of: Verdict) -> dict[str, str]:
    return {c.name: c.result for c in verdict_of.checks}


SEEN = Observations(stable=VersionStats(1000, 2, 0.1), canary=VersionStats(200, 1, 0.11))
STABLE = counts(20000, 100, {0.1: 100, 0.25: 10})  # 0.5% errors; 0.5% slower than 100 ms


# a table: one case per line, read across
# fmt: off
CHECKS = [
    # healthy: the same as stable, however little of it there is
    (counts(4000, 20, {0.1: 20, 0.25: 2}), {"error_ratio": "pass", "error_ratio_above_stable": "pass", "latency_p99_s": "pass", "latency_p99_ratio_to_stable": "pass"}),
    (counts(3, 0), {"error_ratio": "pass", "error_ratio_above_stable": "pass", "latency_p99_s": "pass", "latency_p99_ratio_to_stable": "pass"}),
    # 30% errors: decided on a few dozen requests
    (counts(40, 12), {"error_ratio": "fail", "error_ratio_above_stable": "fail"}),
    # 2% against stable's 0.5%, with enough requests
    (counts(8000, 160, {0.1: 40, 0.25: 4}), {"error_ratio": "fail", "error_ratio_above_stable": "fail", "latency_p99_s": "pass"}),
    # 2% on a handful of requests: no evidence yet, so no verdict against it
    (counts(50, 1), {"error_ratio": "pass", "error_ratio_above_stable": "pass"}),
    # three times slower: a tenth of its requests over 250 ms
    (counts(2000, 10, {0.1: 400, 0.25: 200, 0.5: 5}), {"error_ratio": "pass", "latency_p99_s": "pass", "latency_p99_ratio_to_stable": "fail"}),
    # slower than the absolute limit
    (counts(2000, 10, {0.1: 2000, 0.25: 1500, 0.5: 300}), {"latency_p99_s": "fail", "latency_p99_ratio_to_stable": "fail"}),
]
CHECKS_IDS = ["healthy", "healthy-few", "errors-30pct", "errors-2pct", "errors-few", "latency-x3", "latency-absolute"]
# fmt: on


@pytest.mark.parametrize(("canary", "expected"), CHECKS, ids=CHECKS_IDS)
def test_checks(canary: Counts, expected: dict[str, str]) -> None:
    got = results(judge(S, SEEN, evidence(canary, STABLE), weight=10))
    assert {k: got[k] for k in expected} == expected


def test_before_the_first_step_and_without_canary_requests_checks_are_inconclusive() -> None:
    assert set(results(judge(S, SEEN)).values()) == {"pass", "inconclusive"}
    nothing = judge(S, SEEN, evidence(counts(0, 0), STABLE), weight=10)
    assert nothing.result == "inconclusive"
    assert "no canary requests yet" in nothing.checks[-1].detail


def test_at_the_last_step_stable_comparisons_are_skipped_not_passed() -> None:
    verdict = judge(S, SEEN, evidence(counts(500, 1), counts(0, 0)), weight=100)
    skipped = [c for c in verdict.checks if c.result == "skipped"]
    assert {c.name for c in skipped} == {"error_ratio_above_stable", "latency_p99_ratio_to_stable"}
    assert all("stable served no requests" in c.detail for c in skipped)
    assert verdict.result == "pass"


def test_checks_explain_themselves() -> None:
    """The statistic, its threshold, the counts and the regression ruled out so far."""
    verdict = judge(S, SEEN, evidence(counts(8000, 160), STABLE), weight=10)
    check = next(c for c in verdict.checks if c.name == "error_ratio_above_stable")
    assert check.value == pytest.approx(0.015) and check.threshold == 0.005
    assert check.samples == 8000 and check.evidence is not None and check.evidence_limit == 400
    assert "160/8000 canary, 100/20000 stable" in check.detail
    assert "at most" in check.detail and "points above stable" in check.detail
    assert verdict.numbers()["error_ratio_above_stable_evidence"] > 400


def test_a_canary_that_stops_answering_while_holding_weight_fails() -> None:
    """Stable served 200 requests while the canary, at 10%, got none of the ~22 it should
    have: P(none | healthy) = 0.9^200 < 1e-8. Fewer missing is no crash; no clock counts."""
    verdict = judge(S, SEEN, evidence(counts(400, 0), STABLE, 200), weight=10)
    traffic = next(c for c in verdict.checks if c.name == "canary_traffic")
    assert traffic.result == "fail" and "stopped answering" in traffic.detail
    assert "none of the 22 requests its 10% share implies while stable served 200" in (
        traffic.detail
    )
    few = judge(S, SEEN, evidence(counts(400, 0), STABLE, 170), weight=10)  # 0.9^170 > 1e-8
    assert results(few)["canary_traffic"] == "pass"
    half = judge(S, SEEN, evidence(counts(400, 0), STABLE, 27), weight=50)  # 0.5^27 < 1e-8
    assert results(half)["canary_traffic"] == "fail"


def test_a_canary_that_is_not_ready_is_inconclusive() -> None:
    verdict = judge(S, Observations(stable=SEEN.stable, canary=None, canary_ready=False))
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


AGREEMENT_CASES = [
    (8, 0, "fail"),  # a label bug: a handful of pairs is evidence enough
    (200, 0, "fail"),
    (200, 155, "pass"),  # 77.5% (two classes swapped): 200 pairs are not evidence yet
    (1000, 775, "fail"),  # ... 1,000 are (the holdout gate stops this one earlier)
    (200, 183, "pass"),  # 91.5% (an honest improvement, v1 -> v2)
    (30, 24, "pass"),  # 80% on 30 pairs is not yet evidence of less than 85%
    (0, 0, "pass"),  # no pairs yet: nothing against it (no data is `None`)
]


@pytest.mark.parametrize(("pairs", "agreeing", "result"), AGREEMENT_CASES)
def test_the_shadow_agreement_check(pairs: int, agreeing: int, result: str) -> None:
    verdict = judge(S, SEEN, None, 0, ShadowCounts(pairs, agreeing, pairs))
    check = next(c for c in verdict.checks if c.name == "prediction_agreement")
    assert check.result == result, check.detail
    assert check.samples == pairs and check.threshold == 0.85
    if pairs:
        assert f"{agreeing:g} of {pairs:g} pairs" in check.detail
        # five tests share alpha while the rollout shadows
        assert check.evidence_limit == pytest.approx(5 / S.analysis.alpha)


def test_a_silent_comparator_is_no_data_and_no_shadow_is_no_check() -> None:
    check = next(
        c for c in judge(S, SEEN, None, 0, None).checks if c.name == "prediction_agreement"
    )
    assert check.result == "inconclusive" and "no data from the shadow comparator" in check.detail
    assert all(c.name != "prediction_agreement" for c in judge(S, SEEN, None, 0).checks)


# a table: one case per line, read across
# fmt: off
DRIFT_CASES = [
    (InputDrift(0.41, "pixels[12]", 1000), "inconclusive", "live inputs drifted from stable's profile: PSI 0.410 on 'pixels[12]' over 1000 live samples, above 0.25"),
    (InputDrift(0.41, "pixels[12]", 120), "pass", "judged from 500"),
    (InputDrift(0.05, "pixels[3]", 1000), "pass", "PSI 0.050 on 'pixels[3]'"),
    (None, "skipped", "no input profile scored"),
]
# fmt: on


@pytest.mark.parametrize(("drift", "result", "detail"), DRIFT_CASES)
def test_drifted_live_inputs_hold_the_rollout(
    drift: InputDrift | None, result: str, detail: str
) -> None:
    seen = Observations(SEEN.stable, SEEN.canary, drift=drift)
    checks = judge(S, seen, None, 0, ShadowCounts(100, 95, 100)).checks
    check = next(c for c in checks if c.name == "input_drift")
    assert check.result == result and detail in check.detail and check.threshold == 0.25
