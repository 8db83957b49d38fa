"""The generated rules under `promtool check rules` and `promtool test rules`.

Every alert is tested on every metrics source with synthetic series in that source's own
format: it fires above its threshold with the right labels and annotations, and stays
quiet at and below it. Thresholds are set to binary fractions (1/16) so that "exactly at
the threshold" is exact in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelcanary.alerts.profile import PROFILES, load_profile
from modelcanary.alerts.rules import ALERT_NAMES, render
from modelcanary.cli import main
from modelcanary.metrics_contract import LATENCY_BUCKETS
from tests.conftest import PROJECT
from tests.support.promtool import promtool, run_rule_tests

PROFILE = load_profile(
    "demo", ["error_ratio_max=0.0625", "canary_error_margin=0.0625", "latency_p99_max_s=0.25"]
)
MINUTES = 3
STEPS = MINUTES * 60
FAST, MEDIUM, SLOW = 0.01, 0.15, 0.3  # all of a version's requests land in (previous, this]
RUNBOOK = PROFILE.runbook_url


@dataclass(frozen=True)
class Version:
    model: str
    version: str
    ok: int  # successful requests per second
    errors: int = 0  # failed requests per second
    client_errors: int = 0  # requests per second the client broke (never errors)
    bucket: float = FAST
    weight: int | None = None
    role: str | None = None
    drop_to: int | None = None  # after 2 minutes, requests per second fall to this


def counter(per_second: int, drop_to: int | None = None) -> str:
    if drop_to is None:
        return f"0+{per_second}x{STEPS}"
    head = 120
    return f"0+{per_second}x{head} {per_second * head}+{drop_to}x{STEPS - head - 1}"


def scaled(v: Version, rate: int) -> int | None:
    """After a drop, a part of the traffic keeps its proportion."""
    if v.drop_to is None:
        return None
    total = v.ok + v.errors
    return v.drop_to * rate // total if total else 0


def histogram(name: str, labels: str, v: Version, scale: float) -> list[dict[str, str]]:
    total = v.ok + v.errors
    series = []
    for bound in (*LATENCY_BUCKETS, float("inf")):
        le = "+Inf" if bound == float("inf") else f"{bound * scale:g}"
        inside = bound >= v.bucket
        series.append(
            {
                "series": f'{name}{{{labels},le="{le}"}}',
                "values": counter(total if inside else 0, v.drop_to if inside else None),
            }
        )
    return series


def source_series(source: str, v: Version) -> list[dict[str, str]]:
    mv = f'model="{v.model}",version="{v.version}"'
    ok_after, err_after = scaled(v, v.ok), scaled(v, v.errors)
    if source == "gateway":
        name = "modelcanary_gateway_requests_total"
        series = [{"series": f'{name}{{{mv},code="200"}}', "values": counter(v.ok, ok_after)}]
        series.append({"series": f'{name}{{{mv},code="400"}}', "values": counter(v.client_errors)})
        if v.errors:
            series.append(
                {"series": f'{name}{{{mv},code="502"}}', "values": counter(v.errors, err_after)}
            )
        return series + histogram("modelcanary_gateway_request_duration_seconds_bucket", mv, v, 1)
    if source == "triton":
        series = [
            {"series": f"nv_inference_request_success{{{mv}}}", "values": counter(v.ok, ok_after)},
            {
                "series": f'nv_inference_request_failure{{{mv},reason="BACKEND"}}',
                "values": counter(v.errors, err_after),
            },
            # canceled by the client, or rejected on a timeout it set
            *(
                {
                    "series": f'nv_inference_request_failure{{{mv},reason="{reason}"}}',
                    "values": counter(v.client_errors),
                }
                for reason in ("CANCELED", "REJECTED")
            ),
        ]
        return series + histogram("modelcanary_backend_request_duration_seconds_bucket", mv, v, 1)
    if source == "knative":
        kn = f'{mv},namespace_name="ml",revision_name="{v.model}-predictor-0000{v.version}"'
        series = [
            {
                "series": f'revision_app_request_count{{{kn},response_code="200",response_code_class="2xx"}}',
                "values": counter(v.ok, ok_after),
            },
            {
                "series": f'revision_app_request_count{{{kn},response_code="503",response_code_class="5xx"}}',
                "values": counter(v.errors, err_after),
            },
            {
                "series": f'revision_app_request_count{{{kn},response_code="400",response_code_class="4xx"}}',
                "values": counter(v.client_errors),
            },
        ]
        return series + histogram("revision_app_request_latencies_bucket", kn, v, 1000)
    if source == "istio":
        istio = (
            f'reporter="destination",destination_canonical_service="{v.model}",'
            f'destination_canonical_revision="{v.version}",destination_workload="{v.model}-v{v.version}"'
        )
        series = [
            {
                "series": f'istio_requests_total{{{istio},response_code="200"}}',
                "values": counter(v.ok, ok_after),
            },
            {
                "series": f'istio_requests_total{{{istio},response_code="500"}}',
                "values": counter(v.errors, err_after),
            },
            {
                "series": f'istio_requests_total{{{istio},response_code="400"}}',
                "values": counter(v.client_errors),
            },
            # the source side of the same requests must not be counted twice
            {
                "series": f'istio_requests_total{{{istio.replace("destination", "source", 1)},response_code="200"}}',
                "values": counter(1000),
            },
        ]
        return series + histogram("istio_request_duration_milliseconds_bucket", istio, v, 1000)
    raise AssertionError(source)


def rollout_series(source: str, v: Version) -> list[dict[str, str]]:
    """Split and roles: the gateway's gauges locally, the controller's metrics otherwise."""
    weight, role = (
        ("modelcanary_gateway_weight_percent", "modelcanary_gateway_version_role")
        if source == "gateway"
        else ("modelcanary_rollout_weight_percent", "modelcanary_rollout_version_role")
    )
    mv = f'model="{v.model}",version="{v.version}"'
    series = []
    if v.weight is not None:
        series.append({"series": f"{weight}{{{mv}}}", "values": f"{v.weight}x{STEPS}"})
    if v.role is not None:
        series.append({"series": f'{role}{{{mv},role="{v.role}"}}', "values": f"1x{STEPS}"})
    return series


def alert(
    name: str, severity: str, v: Version, source: str, summary: str, description: str
) -> dict[str, list[dict[str, Any]]]:
    """Alert NAME firing for V, as promtool expects it."""
    fired = {
        "exp_labels": {
            "severity": severity,
            "model": v.model,
            "version": v.version,
            "source": source,
        },
        "exp_annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{RUNBOOK}#{name.lower()}",
        },
    }
    return {name: [fired]}


def run_promtool(
    tmp_path: Path,
    source: str,
    versions: list[Version],
    expected: dict[str, list[dict[str, Any]]],
    at: str,
    weighted_only: list[Version] = (),  # type: ignore[assignment]
) -> None:
    series = [s for v in versions for s in (*source_series(source, v), *rollout_series(source, v))]
    series += [s for v in weighted_only for s in rollout_series(source, v)]
    run_rule_tests(tmp_path, PROFILE, series, expected, at)


SOURCES = ["gateway", "triton", "knative", "istio"]


@pytest.mark.parametrize("source", SOURCES)
def test_high_error_ratio(tmp_path: Path, source: str) -> None:
    at_threshold = Version("m", "1", ok=15, errors=1)  # 1/16: exactly the limit, quiet
    above = Version("m", "2", ok=14, errors=2)  # 2/16
    clean = Version("m", "3", ok=16)  # no error series at all: counted as 0
    summary = "m version 2 fails 12.5% of requests"
    description = f"m version 2 failed 12.5% of its requests over the last 15s (source {source}), above the limit of 6.25%."
    expected = alert("ModelVersionHighErrorRatio", "critical", above, source, summary, description)
    run_promtool(tmp_path, source, [at_threshold, above, clean], expected, "2m")


@pytest.mark.parametrize("source", SOURCES)
def test_high_latency_p99(tmp_path: Path, source: str) -> None:
    slow = Version("m", "1", ok=16, bucket=SLOW)  # P99 0.299 s
    medium = Version("m", "2", ok=16, bucket=MEDIUM)  # P99 0.1495 s, below 0.25
    idle = Version("m", "3", ok=0, bucket=SLOW)  # no traffic: not judged
    summary = "m version 1 answers slowly: P99 299ms"
    description = f"The P99 latency of m version 1 was 299ms over the last 15s (source {source}), above the limit of 0.25s."
    expected = alert("ModelVersionHighLatencyP99", "critical", slow, source, summary, description)
    run_promtool(tmp_path, source, [slow, medium, idle], expected, "2m")


@pytest.mark.parametrize("source", SOURCES)
def test_traffic_below_share_and_drop(tmp_path: Path, source: str) -> None:
    stable = Version("m", "1", ok=15, weight=50)
    starved = Version("m", "2", ok=1, weight=50)  # 1/16 of the traffic for a 50% share
    summary = "m version 2 receives less traffic than its share"
    description = f"m version 2 receives 6.25% of the model's requests (source {source}), less than 50% of the share the traffic split gives it."
    expected = alert(
        "ModelVersionTrafficBelowShare", "warning", starved, source, summary, description
    )
    summary = "m version 2 traffic dropped"
    description = f"m version 2 receives 1.00 requests/s (source {source}), less than 30% of its share of the model's traffic over the last 1m."
    expected |= alert("ModelVersionTrafficDrop", "warning", starved, source, summary, description)
    run_promtool(tmp_path, source, [stable, starved], expected, "2m")


@pytest.mark.parametrize("source", SOURCES)
def test_traffic_drop_fires_for_a_weighted_version_without_series(
    tmp_path: Path, source: str
) -> None:
    """Issue 14: a canary that crashed has no series at all; `<` cannot see it, `unless` can."""
    stable = Version("m", "1", ok=16, weight=50)
    vanished = Version("m", "2", ok=0, weight=50)  # the split gives it half; no series at all
    summary = "m version 2 traffic dropped"
    description = f"m version 2 receives 0.00 requests/s (source {source}), less than 30% of its share of the model's traffic over the last 1m."
    expected = alert("ModelVersionTrafficDrop", "warning", vanished, source, summary, description)
    run_promtool(tmp_path, source, [stable], expected, "2m", weighted_only=[vanished])


@pytest.mark.parametrize("source", SOURCES)
def test_traffic_drop_against_the_recent_past(tmp_path: Path, source: str) -> None:
    dropped = Version("m", "1", ok=16, weight=100, drop_to=2)  # 16/s, then 2/s after 2 minutes
    summary = "m version 1 traffic dropped"
    description = f"m version 1 receives 2.00 requests/s (source {source}), less than 30% of its share of the model's traffic over the last 1m."
    expected = alert("ModelVersionTrafficDrop", "warning", dropped, source, summary, description)
    run_promtool(tmp_path, source, [dropped], expected, "2m35s")
    # before the drop, and once the past has caught up with it, nothing
    run_promtool(tmp_path, source, [dropped], {}, "1m50s")
    run_promtool(tmp_path, source, [dropped], {}, "2m59s")


@pytest.mark.parametrize("source", SOURCES)
def test_canary_worse_than_stable(tmp_path: Path, source: str) -> None:
    versions = [
        Version("a", "1", ok=16, role="stable", bucket=MEDIUM),
        Version("a", "2", ok=15, errors=1, role="canary", bucket=MEDIUM),  # exactly the margin
        Version("b", "1", ok=16, role="stable", bucket=MEDIUM),
        Version("b", "2", ok=14, errors=2, role="canary", bucket=SLOW),  # worse on both
        Version("c", "1", ok=16, role="stable", bucket=FAST),  # P99 about 10 ms
        Version("c", "2", ok=16, role="canary", bucket=0.03),  # 3 times slower, yet under the floor
    ]
    canary = versions[3]
    summary = "Canary b version 2 fails more than stable"
    description = f"The error ratio of canary b version 2 is 12.5% above the stable version's over the last 15s (source {source}); the margin is 6.25%."
    expected = alert(
        "ModelCanaryErrorRatioAboveStable", "critical", canary, source, summary, description
    )
    summary = "Canary b version 2 is slower than stable"
    description = f"The P99 latency of canary b version 2 is 2.00 times the stable version's over the last 15s (source {source}); the limit is 1.5 times above {PROFILE.canary_latency_floor_s:g}s."
    expected |= alert(
        "ModelCanaryLatencyAboveStable", "critical", canary, source, summary, description
    )
    summary = "b version 2 fails 12.5% of requests"
    description = f"b version 2 failed 12.5% of its requests over the last 15s (source {source}), above the limit of 6.25%."
    expected |= alert(
        "ModelVersionHighErrorRatio", "critical", canary, source, summary, description
    )
    summary = "b version 2 answers slowly: P99 299ms"
    description = f"The P99 latency of b version 2 was 299ms over the last 15s (source {source}), above the limit of 0.25s."
    expected |= alert(
        "ModelVersionHighLatencyP99", "critical", canary, source, summary, description
    )
    run_promtool(tmp_path, source, versions, expected, "2m")


@pytest.mark.parametrize("source", SOURCES)
def test_a_healthy_rollout_raises_nothing(tmp_path: Path, source: str) -> None:
    versions = [
        Version("m", "1", ok=90, role="stable", weight=90, bucket=MEDIUM),
        Version("m", "2", ok=10, role="canary", weight=10, bucket=MEDIUM),
    ]
    run_promtool(tmp_path, source, versions, {}, "2m")


@pytest.mark.parametrize("source", SOURCES)
def test_requests_the_client_broke_never_judge_a_version(tmp_path: Path, source: str) -> None:
    """The issue's attack, at 15 a second: broken requests pinned to a canary (answered 4xx;
    Triton cancels or rejects what the client cancels or times out). They neither fail the
    healthy canary nor dilute the error ratio of a failing one."""
    versions = [
        Version("m", "1", ok=90, role="stable", weight=90),
        Version("m", "2", ok=10, client_errors=15, role="canary", weight=10),
        Version("n", "1", ok=16, role="stable", weight=90),
        Version("n", "2", ok=14, errors=2, client_errors=15, role="canary", weight=10),
    ]
    failing = versions[3]
    summary = "n version 2 fails 12.5% of requests"
    description = f"n version 2 failed 12.5% of its requests over the last 15s (source {source}), above the limit of 6.25%."
    expected = alert(
        "ModelVersionHighErrorRatio", "critical", failing, source, summary, description
    )
    summary = "Canary n version 2 fails more than stable"
    description = f"The error ratio of canary n version 2 is 12.5% above the stable version's over the last 15s (source {source}); the margin is 6.25%."
    expected |= alert(
        "ModelCanaryErrorRatioAboveStable", "critical", failing, source, summary, description
    )
    run_promtool(tmp_path, source, versions, expected, "2m")


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("where", ["alerts/{}.rules.yml", "charts/modelcanary/files/rules/{}.yaml"])
def test_committed_rule_files_match_the_generator(profile: str, where: str) -> None:
    committed = PROJECT / where.format(profile)
    assert committed.read_text() == render(load_profile(profile)), (
        f"{committed} drifted from the generator: run `modelcanary alerts render --profile {profile}`"
    )
    promtool("check", "rules", str(committed))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_chart_reads_the_generated_profile(profile: str) -> None:
    """The chart's windows come from files/profiles/, which the generator writes."""
    from modelcanary.commands.alerts import CHART_PROFILES_DIR, profile_yaml

    committed = PROJECT / CHART_PROFILES_DIR / f"{profile}.yaml"
    assert committed.read_text() == profile_yaml(load_profile(profile)), (
        f"{committed} drifted from the profile: run `modelcanary alerts render --profile {profile}`"
    )


def test_spec_defaults_are_the_production_profile_and_the_chart_values() -> None:
    """One source: the spec's thresholds default to the production profile's, and the
    chart's `rollout:` values are the spec's defaults."""
    from modelcanary.rollout.spec import RolloutSpec

    production = load_profile("production")
    analysis = RolloutSpec.model_validate(
        {"model": "m", "stable": {"version": "1"}, "canary": {"version": "2"}}
    ).analysis
    assert analysis.error_ratio.max == production.error_ratio_max
    assert analysis.error_ratio.max_above_stable == production.canary_error_margin
    assert analysis.latency_p99.max_seconds == production.latency_p99_max_s
    assert analysis.latency_p99.max_ratio_to_stable == production.canary_latency_ratio
    assert analysis.latency_p99.ratio_floor_seconds == production.canary_latency_floor_s
    values = yaml.safe_load((PROJECT / "charts/modelcanary/values.yaml").read_text())["rollout"]
    spec = RolloutSpec.model_validate(
        {"model": "m", "stable": {"version": "1"}, "canary": {"version": "2"}, **values}
    )
    defaults = RolloutSpec.model_validate(
        {"model": "m", "stable": {"version": "1"}, "canary": {"version": "2"}}
    )
    assert spec == defaults, "charts/modelcanary/values.yaml `rollout:` differs from the spec"


def test_every_alert_is_labelled_and_annotated() -> None:
    groups = yaml.safe_load(render(load_profile("production")))["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert [a["alert"] for a in alerts] == list(ALERT_NAMES)
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert (
            "$value" in rule["annotations"]["description"]
            or "$value" in rule["annotations"]["summary"]
        )
        assert rule["annotations"]["runbook_url"].startswith("https://")
        assert rule["for"] != "0s"  # production rides out noise


def test_render_command_and_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rules.yml"
    assert (
        main(
            [
                "alerts",
                "render",
                "--profile",
                "production",
                "--set",
                "window=10m",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "[10m]" in out.read_text()
    assert main(["alerts", "render", "--profile", "staging"]) == 2
    assert (
        "--profile 'staging' is not known; use one of: demo, production" in capsys.readouterr().err
    )
    assert main(["alerts", "render", "--set", "window=soon"]) == 2
    assert "window: 'soon' is not a duration like 30s, 5m or 1h30m" in capsys.readouterr().err
    assert main(["alerts", "render", "--set", "colour=red"]) == 2
    assert "--set colour: not a profile setting" in capsys.readouterr().err


def on_replica(series: list[dict[str, str]], instance: str) -> list[dict[str, str]]:
    """The same series as scraped from one replica: Prometheus adds its `instance`."""
    return [
        {**s, "series": s["series"].replace("{", f'{{instance="{instance}",', 1)} for s in series
    ]


@pytest.mark.parametrize("source", SOURCES)
def test_cumulative_counters_are_recorded_per_replica(tmp_path: Path, source: str) -> None:
    """Issue 20: summed across replicas, the counters dropped when a pod went away and the
    controller took it for a restart. Each replica's series stays its own, in every source."""
    a = Version("n", "1", ok=15, errors=1)  # 1 error in 21 requests: no alert fires
    b = Version("n", "1", ok=5)
    series = on_replica(source_series(source, a), "10.0.0.1:8000")
    series += on_replica(source_series(source, b), "10.0.0.2:8000")

    def sample(name: str, instance: str, value: float, le: str = "") -> dict[str, Any]:
        bucket = f'le="{le}",' if le else ""
        labels = f'{name}{{instance="{instance}",{bucket}model="n",source="{source}",version="1"}}'
        return {"labels": labels, "value": value}

    def check(
        name: str, selector: str, first: float, second: float, le: str = ""
    ) -> dict[str, Any]:
        """NAME{SELECTOR} at 1m: FIRST on replica 10.0.0.1, SECOND on 10.0.0.2."""
        found = [
            sample(name, "10.0.0.1:8000", first, le),
            sample(name, "10.0.0.2:8000", second, le),
        ]
        return {"expr": f"{name}{{{selector}}}", "eval_time": "1m", "exp_samples": found}

    minute = 60
    selector, inf = f'source="{source}"', f'source="{source}",le="+Inf"'
    recorded = [
        check("modelcanary:requests:total", selector, 16 * minute, 5 * minute),
        # a replica without a single error has an error series of 0 all the same
        check("modelcanary:errors:total", selector, 1 * minute, 0),
        check("modelcanary:latency_buckets:total", inf, 16 * minute, 5 * minute, "+Inf"),
    ]
    run_rule_tests(tmp_path, PROFILE, series, {}, "1m", recorded)
