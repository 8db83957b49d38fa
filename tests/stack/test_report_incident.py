"""The demo report shows a short incident as it happened (issue 23): a canary at 10% that
fails 30% of its requests for a few seconds, then gets no traffic (rolled back), must show
its errors on the report's error-ratio chart. It stayed at 0 for the demo's version 3."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelcanary.adapters.gateway_router import GatewayRouter
from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.local import report
from modelcanary.local.controller import SOURCE
from modelcanary.local.stack import LocalStack, StackOptions
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    options = StackOptions(
        digits_repo, "digits", stable=2, run_dir=tmp_path_factory.mktemp("up"), versions=(2, 3)
    )
    local = LocalStack(options, say=lambda line: None)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def test_a_short_error_incident_shows_on_the_report(stack: LocalStack, digits_repo: Path) -> None:
    urls = stack.urls
    token = Path(urls["gateway_admin_token_file"]).read_text().strip()
    router = GatewayRouter(urls["gateway"], token, "digits", "2", "3")
    load = BackgroundLoad(urls["gateway"], "digits", request_bodies(digits_repo, "digits"), 40)
    start = time.time()
    load.start()
    try:
        time.sleep(3)
        router.route(10, promoted=False)
        time.sleep(4)
        # as in the demo: 30% of the canary's requests fail, and within seconds it is
        # rolled back (no traffic again)
        set_faults(Path(urls["faults_dir"]), "digits", 3, FaultSpec(error_ratio=0.3))
        time.sleep(3)
        router.route(0, promoted=False)
        set_faults(Path(urls["faults_dir"]), "digits", 3, FaultSpec())
        time.sleep(6)
    finally:
        load.stop()
    end = time.time()
    source = PrometheusSource(urls["prometheus"], SOURCE, 0)
    found = report.charts(source.query_range, report.version_panels("digits", SOURCE), start, end)
    charts = {chart.title: chart for chart in found}
    errors = next(c for title, c in charts.items() if title.startswith("Error ratio"))
    canary = [v for _, v in errors.series.get("3", []) if v == v]
    assert canary and max(canary) >= 0.1, errors.series.get("3")
    stable = [v for _, v in errors.series.get("2", []) if v == v]
    assert stable and max(stable) == 0, "the stable version failed no request"
    latency = next(c for title, c in charts.items() if title.startswith("P99"))
    assert latency.series.get("3"), "the canary's latency while it took traffic"
    # the page draws the incident: a line for version 3 on the error chart
    page = report.render(report.Report("t", start, end, list(charts.values())))
    assert page.count("<polyline") >= 4
