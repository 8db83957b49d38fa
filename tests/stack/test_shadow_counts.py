"""The shadow comparison's pairs as the rollout reads them from a real Prometheus (issue 25:
once in about ten rollouts the judge saw "207 agreeing of 202 pairs").

The comparator's counters are consistent in every scrape (both are incremented together,
on the event loop that serves /metrics). The reading was not: the pairs and the agreeing
pairs came from two queries, and when Prometheus recorded a new scrape between them, the
agreeing pairs were newer than the pairs. Here that interleaving is made to happen every
time: between the source's queries, the comparator compares 20 more pairs, all agreeing,
and the test waits until Prometheus has recorded them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.asgi_server import AppServer
from modelcanary.local.monitoring import Prometheus, ScrapeTarget
from modelcanary.rollout.ports import RolloutKey, ShadowCounts
from modelcanary.shadow.metrics import ShadowMetrics
from modelcanary.shadow.pairs import OutputPairs
from tests.support.traffic import demo_prometheus
from tests.support.waits import until

pytestmark = pytest.mark.slow
KEY = RolloutKey("digits", "1", "3")
RECORDED_AGREEING = 'sum(modelcanary:shadow_agreeing_pairs:total{model="digits",version="3"})'


def pairs(count: int, agreeing: int) -> list[OutputPairs]:
    return [OutputPairs("logits", "classification", count, agreeing)]


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[ShadowMetrics, Prometheus]]:
    """The comparator's metrics on an exporter, scraped every second by a real Prometheus
    with the demo rules."""
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)

    async def exposition(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    exporter = AppServer(Starlette(routes=[Route("/metrics", exposition)]), name="comparator")
    exporter.start()
    try:
        target = ScrapeTarget("gateway", f"{exporter.host}:{exporter.port}")
        with demo_prometheus(tmp_path, target) as prometheus:
            yield metrics, prometheus
    finally:
        exporter.stop()


class Interleaved(PrometheusSource):
    """A source whose first shadow query is followed by 20 more compared pairs, all
    agreeing, recorded by Prometheus before the source goes on."""

    def __init__(self, url: str, metrics: ShadowMetrics) -> None:
        super().__init__(url, "gateway", window_s=15)
        self.metrics = metrics
        self.interleaved = False

    def query(self, expression: str) -> list[tuple[dict[str, str], float]]:
        answer = super().query(expression)
        if "shadow" in expression and "pairs" in expression and not self.interleaved:
            self.interleaved = True
            self.metrics.compared(KEY.model, KEY.canary, pairs(20, 20))
            until(lambda: self.value(RECORDED_AGREEING) == 115, 15, "115 agreeing not recorded")
        return answer

    def value(self, expression: str) -> float:
        found = super().query(expression)
        return found[0][1] if found else -1.0


def test_agreeing_pairs_never_exceed_the_pairs_read_with_them(
    scraped: tuple[ShadowMetrics, Prometheus],
) -> None:
    metrics, prometheus = scraped
    metrics.started(KEY.model, KEY.canary, {"logits": "classification"})
    metrics.compared(KEY.model, KEY.canary, pairs(100, 95))
    source = Interleaved(prometheus.url, metrics)
    until(lambda: source.value(RECORDED_AGREEING) == 95, 15, "95 agreeing not recorded")
    seen = source.observe([KEY])[KEY].shadow
    assert source.interleaved
    assert seen is not None and seen.agreeing <= seen.pairs, seen
    assert seen in (ShadowCounts(100, 95, 100), ShadowCounts(120, 115, 120))
