"""A short incident as the views show it (issue 23), on the real stack (Triton, gateway,
Prometheus, Alertmanager) under steady load: version 3 takes 10% of the traffic beside
stable 2, shadowed, then fails 30% of its requests for a few seconds and gets no traffic
again (rolled back), as in the demo.

- The demo's report shows those errors: its error-ratio chart stayed at 0 for version 3.
- Every PromQL expression of the chart's Grafana dashboards returns data. They run on a
  second real Prometheus that scrapes the same live stack (gateway, Triton) with the same
  rule file, and also the operator's own series (kube.rollout_metrics, exported as the
  operator exports them), which the local stack has no operator to publish. The rules
  keep {model, version, source}; only the operator's series carry `namespace` (here
  "models"), so `$namespace` is Grafana's "All" (`.*`), which matches either way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelcanary import metrics_contract
from modelcanary.adapters.gateway_router import GatewayRouter
from modelcanary.adapters.gateway_shadow import GatewayShadow
from modelcanary.adapters.holdout_gate import run_holdout_gate
from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.adapters.repo_reader import LocalRepository
from modelcanary.alerts import promql as q
from modelcanary.asgi_server import AppServer
from modelcanary.dashboard import grafana
from modelcanary.kube.rollout_metrics import RolloutMetrics
from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.local import report
from modelcanary.local.controller import SOURCE
from modelcanary.local.monitoring import Prometheus, ScrapeTarget, prometheus_config
from modelcanary.local.stack import LocalStack
from modelcanary.rollout.spec import parse_spec
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome
from tests.support.local_stack import digits_stack
from tests.support.traffic import demo_prometheus

pytestmark = pytest.mark.slow
VERSIONS = {"model": "digits", "stable": {"version": "2"}, "canary": {"version": "3"}}
SPEC = parse_spec({**VERSIONS, "steps": [10, 100], "interval": "10s"}, "test")
GRAFANA_VARIABLES = {
    "namespace": ".*",
    "model": "digits",
    "source": SOURCE,
    "__rate_interval": "15s",
}


@pytest.fixture(scope="module")
def stack(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with digits_stack(digits_repo, tmp_path_factory.mktemp("up"), 2, (2, 3)) as local:
        yield local


@pytest.fixture(scope="module")
def operator_metrics() -> Iterator[tuple[RolloutMetrics, str]]:
    """The operator's series, served as its metrics port serves them."""
    metrics = RolloutMetrics()
    server = AppServer(make_asgi_app(metrics.registry), name="operator metrics")
    server.start()
    try:
        yield metrics, f"{server.host}:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def grafana_prometheus(
    stack: LocalStack,
    operator_metrics: tuple[RolloutMetrics, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A second real Prometheus over the live stack and the operator's series."""
    urls = stack.urls
    targets = [
        ScrapeTarget("gateway", urls["gateway"].removeprefix("http://")),
        ScrapeTarget("triton", urls["triton_metrics"].removeprefix("http://").split("/")[0]),
        ScrapeTarget("operator", operator_metrics[1]),
    ]
    server = Prometheus(tmp_path_factory.mktemp("grafana-prometheus"))
    rules = Path(urls["run_dir"], "rules.yml")
    server.start(prometheus_config(targets, [rules], "127.0.0.1:9", "1s"))
    try:
        server.wait_for_targets()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def incident(
    stack: LocalStack,
    digits_repo: Path,
    operator_metrics: tuple[RolloutMetrics, str],
    grafana_prometheus: str,
) -> tuple[float, float, float]:
    """The incident, once for the module: when it began, the fault, and its end."""
    urls, metrics = stack.urls, operator_metrics[0]
    token = Path(urls["gateway_admin_token_file"]).read_text().strip()
    router = GatewayRouter(urls["gateway"], token, "digits", "2", "3")
    shadow = GatewayShadow(urls["gateway"], token, "digits", "2", "3")
    gate = run_holdout_gate(
        (urls["gateway"], urls["gateway"]),
        LocalRepository(digits_repo),
        "digits",
        ("2", "3"),
        0.01,
        0.95,
    )
    load = BackgroundLoad(urls["gateway"], "digits", request_bodies(digits_repo, "digits"), 40)
    start = time.time()
    load.start()
    try:
        metrics.export("models", SPEC, 0, "Shadowing", gate)
        shadow.start(100)
        time.sleep(8)
        router.route(10, promoted=False)
        metrics.export("models", SPEC, 10, "Progressing", gate)
        time.sleep(4)
        # as in the demo: 30% of the canary's requests fail, and within seconds it is
        # rolled back (no traffic again)
        set_faults(Path(urls["faults_dir"]), "digits", 3, FaultSpec(error_ratio=0.3))
        faulty = time.time()
        time.sleep(3)
        router.route(0, promoted=False)
        metrics.export("models", SPEC, 0, "RolledBack", gate)
        set_faults(Path(urls["faults_dir"]), "digits", 3, FaultSpec())
        time.sleep(6)
    finally:
        shadow.stop()
        load.stop()
    return start, faulty, time.time()


def test_a_short_error_incident_shows_on_the_report(
    stack: LocalStack, incident: tuple[float, float, float]
) -> None:
    start, faulty, end = incident
    source = PrometheusSource(stack.urls["prometheus"], SOURCE, 0)
    found = report.charts(source.query_range, report.version_panels("digits", SOURCE), start, end)
    charts = {chart.title: chart for chart in found}
    errors = next(c for title, c in charts.items() if title.startswith("Error ratio"))
    failing = [t for t, v in errors.series.get("3", []) if v == v and v > 0]
    assert failing, errors.series.get("3")  # it was 0 all along
    assert min(failing) >= faulty - 1, "errors before the fault"
    stable = [v for _, v in errors.series.get("2", []) if v == v]
    assert stable and max(stable) == 0, "the stable version failed no request"
    latency = next(c for title, c in charts.items() if title.startswith("P99"))
    assert latency.series.get("3"), "the canary's latency while it took traffic"
    # the page draws the incident: a line for version 3 on the error chart
    page = report.render(report.Report("t", start, end, list(charts.values())))
    assert page.count("<polyline") >= 4


class ShortIncident:
    """The gateway's series as Prometheus scrapes them through a short incident: version 3
    answers 4 requests a second; then 3 of its requests fail between two scrapes, so its
    error counter's series appears already at 3 (prometheus_client creates a label set at
    its first increment); then it gets no traffic (rolled back)."""

    def __init__(self) -> None:
        self.began = time.time()
        self.failed_at: float | None = None

    def exposition(self) -> str:
        now, name = time.time(), f"{metrics_contract.GATEWAY_REQUESTS}_total"
        served = 4 * (min(now, self.failed_at or now) - self.began)
        lines = [
            f'{name}{{model="digits",version="2",code="200"}} {36 * (now - self.began):.1f}',
            f'{name}{{model="digits",version="3",code="200"}} {served:.1f}',
        ]
        if self.failed_at is not None:
            lines.append(f'{name}{{model="digits",version="3",code="500"}} 3')
        return "\n".join(lines) + "\n"


def test_the_first_errors_of_a_version_count_on_the_report(tmp_path: Path) -> None:
    """Deterministically, what the live incident shows by chance: a rate over the new error
    series (the alert rules' error ratio, the report's before) misses the jump from no
    series to its first value, and shows 0; the increase of the recorded totals does not."""
    incident = ShortIncident()

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(incident.exposition())

    exporter = AppServer(Starlette(routes=[Route("/metrics", metrics)]), name="gateway")
    exporter.start()
    try:
        with demo_prometheus(
            tmp_path, ScrapeTarget("gateway", f"127.0.0.1:{exporter.port}")
        ) as server:
            time.sleep(5)
            incident.failed_at = time.time()
            time.sleep(8)
            source = PrometheusSource(server.url, SOURCE, 0)
            start, end = incident.began, time.time()
            rated = source.query_range(f'{q.ERROR_RATIO}{{version="3"}}', start, end, 1.0)
            assert [v for _, points in rated for _, v in points if v > 0] == []  # the defect
            found = report.charts(
                source.query_range, report.version_panels("digits", SOURCE), start, end
            )
    finally:
        exporter.stop()
    errors = next(c for c in found if c.title.startswith("Error ratio"))
    failing = [t for t, v in errors.series["3"] if v == v and v > 0]
    assert failing and min(failing) >= incident.failed_at - 1, errors.series["3"]


def as_promql(expression: str) -> str:
    """A dashboard's expression with its variables set; `label_values(m, l)` (a Grafana
    function) as the PromQL it stands for."""
    for name, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(f"${name}", value)
    found = re.fullmatch(r"label_values\((.*), (\w+)\)", expression)
    return f"count by ({found.group(2)}) ({found.group(1)})" if found else expression


@pytest.mark.parametrize("name", sorted(set(grafana.FILES.values())))
def test_every_grafana_query_returns_data_from_the_live_stack(
    grafana_prometheus: str, incident: tuple[float, float, float], name: str
) -> None:
    start, _, end = incident
    source = PrometheusSource(grafana_prometheus, SOURCE, 0)
    empty = []
    for expression in grafana.expressions(grafana.dashboard(name)):
        series = source.query_range(as_promql(expression), start, end, 1.0)
        if not any(v == v for _, points in series for _, v in points):
            empty.append(expression)
    assert empty == []
