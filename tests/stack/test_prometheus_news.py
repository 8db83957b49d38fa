"""The Prometheus source reads the series again only when they were written since its
last read: against a real Prometheus (1 s scrape and rule evaluation) scraping an
exporter whose counters grow, counting the queries the source sends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.durations import parse_duration
from modelcanary.local.monitoring import Prometheus
from modelcanary.rollout.ports import Observations, RolloutKey
from tests.support.traffic import SOURCE, WINDOW, Traffic, traffic_prometheus
from tests.support.waits import until

pytestmark = pytest.mark.slow
KEY = RolloutKey("voles", "1", "2")


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Traffic]]:
    with traffic_prometheus(tmp_path_factory.mktemp("prometheus")) as found:
        yield found


def test_nothing_new_is_one_query_and_the_same_observations(
    monitoring: tuple[Prometheus, Traffic],
) -> None:
    prometheus, traffic = monitoring
    traffic.serve(KEY.model)
    queries: list[str] = []
    client = httpx.Client(
        timeout=5, event_hooks={"request": [lambda r: queries.append(r.url.params["query"])]}
    )
    source = PrometheusSource(prometheus.url, SOURCE, parse_duration(WINDOW), client)

    def counted() -> Observations | None:
        seen = source.observe([KEY])[KEY]
        return seen if seen.canary is not None and seen.canary.replicas else None

    seen = until(counted, 60, f"no counters for {KEY.model}", every=0.5)
    same = []  # back-to-back reads, most within one rule evaluation (every second)
    for _ in range(20):
        queries.clear()
        first = source.observe([KEY])[KEY]
        sent = len(queries)
        second = source.observe([KEY])[KEY]
        same.append((sent, len(queries) - sent, first == second))
    # nothing written in between: one query, and the same observations
    assert any(later == 1 and equal for _, later, equal in same), same
    assert all(later in (1, 11) for _, later, _ in same), same
    queries.clear()
    time.sleep(2.5)  # two evaluations: the counters grew
    moved = source.observe([KEY])[KEY]
    assert len(queries) == 11, queries
    assert moved.canary is not None and moved.canary.replicas != seen.canary.replicas
