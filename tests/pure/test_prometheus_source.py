"""The Prometheus metrics source, over an injected httpx transport."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import httpx
import pytest

from modelcanary.adapters import prometheus
from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.rollout.ports import Counts, InputDrift, NumericCounts, RolloutKey, ShadowCounts
from tests.support.waits import until

KEY = RolloutKey("digits", "1", "2")


def vector(*items: tuple[dict[str, str], float]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": labels, "value": [1700000000, str(value)]} for labels, value in items
            ],
        },
    }


def pod(labels: dict[str, str], name: str) -> dict[str, str]:
    """The labels of one replica's series (Prometheus' `instance` of its scrape target)."""
    return {
        **labels,
        "instance": {"a": "10.0.0.1:8000", "b": "10.0.0.2:8000", "c": "10.0.0.3:8000"}[name],
    }


def source(answers: dict[str, dict[str, object]], queries: list[str]) -> PrometheusSource:
    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        queries.append(query)
        for prefix, answer in answers.items():
            if query.startswith(prefix):
                return httpx.Response(200, json=answer)
        return httpx.Response(200, json=vector())

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return PrometheusSource("http://prometheus:9090", "gateway", window_s=15, client=client)


def mv(model: str, version: str) -> dict[str, str]:
    """The labels of one version's series from the gateway."""
    return {"model": model, "version": version, "source": "gateway"}


# Prometheus' canned answers by query prefix, one a line so the rows read as a table.
# fmt: off
ANSWERS: dict[str, dict[str, object]] = {
    "modelcanary:requests:rate": vector((mv("digits", "1"), 20.0), (mv("digits", "2"), 4.0), (mv("other", "7"), 1.0)),
    "modelcanary:errors:rate": vector((mv("digits", "2"), 1.0)),
    "modelcanary:latency_p99:seconds": vector((mv("digits", "1"), 0.1), (mv("digits", "2"), float("nan"))),
    "modelcanary:requests:total": vector((pod(mv("digits", "1"), "a"), 5000.0), (pod(mv("digits", "1"), "b"), 70.0), (pod(mv("digits", "2"), "c"), 900.0)),
    "modelcanary:errors:total": vector((pod(mv("digits", "2"), "c"), 30.0)),
    "sum by (model, version, instance, le) (modelcanary:latency_buckets:total": vector((pod({**mv("digits", "2"), "le": "0.1"}, "c"), 850.0), (pod({**mv("digits", "2"), "le": "+Inf"}, "c"), 900.0), (pod({**mv("digits", "2"), "le": "0.05"}, "c"), 700.0)),
    "ALERTS": vector(({"alertname": "ModelVersionHighErrorRatio", "severity": "critical", "model": "digits", "version": "2", "alertstate": "firing"}, 1)),
    "sum by (__name__, model, version, kind, output) ({__name__=~\"modelcanary_shadow_pairs_total|modelcanary_shadow_agreeing_pairs_total\"})": vector(({"__name__": "modelcanary_shadow_pairs_total", "model": "digits", "version": "2", "kind": "classification", "output": "logits"}, 200.0), ({"__name__": "modelcanary_shadow_pairs_total", "model": "digits", "version": "2", "kind": "numeric", "output": "embedding"}, 50.0), ({"__name__": "modelcanary_shadow_agreeing_pairs_total", "model": "digits", "version": "2", "kind": "classification", "output": "logits"}, 3.0), ({"__name__": "modelcanary_shadow_agreeing_pairs_total", "model": "digits", "version": "2", "kind": "numeric", "output": "embedding"}, 49.0), ({"__name__": "modelcanary_shadow_pairs_total", "model": "other", "version": "8", "kind": "numeric", "output": "price"}, 7.0)),
    "max by (model, version) (modelcanary_shadow_input_drift_samples)": vector(({"model": "digits", "version": "2"}, 1000.0)),
    "topk by (model, version) (1, modelcanary_shadow_input_drift_psi)": vector(({"model": "digits", "version": "2", "feature": "pixels[12]"}, 0.4)),
}
# fmt: on


def test_eleven_grouped_queries_serve_every_rollout() -> None:
    queries: list[str] = []
    prom = source(ANSWERS, queries)
    other = RolloutKey("other", "6", "7")
    seen = prom.observe([KEY, other])
    # when the series were last written, then the ten that read them
    assert len(queries) == 11 and queries[0].startswith("label_replace(max(timestamp(")
    assert all('{source="gateway"}' in q for q in queries[:7])
    # the latency buckets, about 60 series per rollout, without their name and source
    assert (
        'sum by (model, version, instance, le) (modelcanary:latency_buckets:total{source="gateway"})'
        in queries
    )
    # the shadow comparator's pairs of the canary: classification ones, agreeing, any, and
    # each numeric output's pairs with those within tolerance
    numeric = (NumericCounts("embedding", 50, 49),)
    assert seen[KEY].shadow == ShadowCounts(200, 3, 250, numeric) and seen[other].shadow is None
    # a regression model: numeric outputs only
    regression = prom.observe([RolloutKey("other", "6", "8")])[RolloutKey("other", "6", "8")]
    price = (NumericCounts("price", 7, 0),)
    assert regression.shadow == ShadowCounts(0, 0, 7, price, classifies=False)
    # and the worst input feature's drift, with the samples it was scored on
    assert seen[KEY].drift == InputDrift(0.4, "pixels[12]", 1000) and seen[other].drift is None
    assert (
        seen[KEY].stable is not None
        and seen[KEY].stable.requests == 300
        and seen[KEY].stable.p99_s == 0.1
    )
    canary = seen[KEY].canary
    assert canary is not None and (canary.requests, canary.errors, canary.p99_s) == (60, 15, None)
    # the cumulative counters per replica: finite buckets in order of their bound, +Inf as
    # `observed`
    assert canary.replicas == {"10.0.0.3:8000": Counts(900, 30, ((0.05, 700), (0.1, 850)), 900)}
    assert seen[KEY].stable is not None and seen[KEY].stable.replicas == {
        "10.0.0.1:8000": Counts(5000, 0, ()),
        "10.0.0.2:8000": Counts(70, 0, ()),
    }
    assert [(a.name, a.severity, a.version, a.state) for a in seen[KEY].alerts] == [
        ("ModelVersionHighErrorRatio", "critical", "2", "firing")
    ]
    assert seen[other].stable is None and seen[other].alerts == ()


def test_unreachable_prometheus_is_no_data() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    prom = PrometheusSource(
        "http://127.0.0.1:9", "gateway", 15, httpx.Client(transport=httpx.MockTransport(refuse))
    )
    seen = prom.observe([KEY])[KEY]
    assert seen.stable is None and seen.canary is None
    assert seen.problem is not None and seen.problem.startswith(
        "Prometheus at http://127.0.0.1:9 is unreachable"
    )


def test_a_rejected_query_names_it() -> None:
    def reject(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=json.dumps({"status": "error", "error": "parse error"}))

    prom = PrometheusSource(
        "http://p:9090", "gateway", 15, httpx.Client(transport=httpx.MockTransport(reject))
    )
    problem = prom.observe([KEY])[KEY].problem
    assert (
        problem is not None
        and 'rejected \'label_replace(max(timestamp(modelcanary:requests:total{source="gateway"}))'
        in problem
        and problem.endswith("': parse error")
    )


@dataclass
class Clock:
    """time.monotonic() for the source, moved by the test."""

    now: float = 100.0

    def monotonic(self) -> float:
        return self.now


class SlowPrometheus:
    """Prometheus whose counters the test moves, and whose bucket query it can hold."""

    NEWS = "label_replace(max(timestamp("
    BUCKETS = "sum by (model, version, instance, le)"

    def __init__(self) -> None:
        self.written, self.requests = 1.0, 900.0
        self.held = threading.Event()
        self.released = threading.Event()
        self.released.set()
        self.failing = False
        self.queries: list[str] = []
        self.clock: Clock | None = None  # a read takes it a second on, if given

    def handler(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        self.queries.append(query)
        if self.clock is not None and query.startswith(self.BUCKETS):
            self.clock.now += 1.0
        if self.failing:
            return httpx.Response(503, json={"status": "error", "error": "overloaded"})
        if query.startswith(self.NEWS):
            return httpx.Response(200, json=vector(({"news": "requests"}, self.written)))
        if query.startswith(self.BUCKETS):
            self.held.set()
            self.released.wait(10)
        if query.startswith("modelcanary:requests:total"):
            return httpx.Response(200, json=vector((pod(mv("digits", "2"), "c"), self.requests)))
        return httpx.Response(200, json=vector())

    def source(self, wait_s: float) -> PrometheusSource:
        client = httpx.Client(transport=httpx.MockTransport(self.handler))
        return PrometheusSource("http://p:9090", "gateway", 15, client, wait_s=wait_s)

    def move(self, requests: float) -> None:
        """The rules wrote again: new news, new counters."""
        self.written, self.requests = self.written + 1, requests


def canary_requests(prom: PrometheusSource) -> float | None:
    seen = prom.observe([KEY])[KEY]
    if seen.canary is None or seen.canary.replicas is None:
        return None
    return seen.canary.replicas["10.0.0.3:8000"].requests


def test_a_tick_goes_on_with_the_last_reading_while_a_read_is_slow() -> None:
    """At scale a read takes Prometheus seconds: with wait_s, `observe` answers from the
    last reading while the read goes on, and from the new one once it is done."""
    slow = SlowPrometheus()
    prom = slow.source(wait_s=0.01)
    try:
        assert canary_requests(prom) == 900
        slow.held.clear()
        slow.released.clear()
        slow.move(1000)
        # once the pace allows, a read begins, and is held in its bucket query
        until(lambda: canary_requests(prom) == 900 and slow.held.is_set(), 5, "no read began")
        assert canary_requests(prom) == 900  # still held: the same read, not a second
        slow.released.set()
        until(lambda: canary_requests(prom) == 1000, 5, "the new reading was never answered")
    finally:
        slow.released.set()
        prom.close()


def test_a_background_read_that_fails_is_reported_not_hidden_by_the_last_reading() -> None:
    slow = SlowPrometheus()
    prom = slow.source(wait_s=0.01)
    try:
        assert canary_requests(prom) == 900
        slow.failing = True
        problem = until(
            lambda: prom.observe([KEY])[KEY].problem, 5, "the failure was never reported"
        )
        assert "answered 503" in problem or "overloaded" in problem
        assert prom.observe([KEY])[KEY].canary is None  # no data, never the old counters
    finally:
        prom.close()


def test_a_reading_older_than_stale_s_is_not_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that takes longer than STALE_S is waited for: evidence that old is not news."""
    slow = SlowPrometheus()
    prom = slow.source(wait_s=0.01)
    try:
        assert canary_requests(prom) == 900
        monkeypatch.setattr(prometheus, "STALE_S", 0.0)
        slow.held.clear()
        slow.released.clear()
        slow.move(1000)
        threading.Thread(target=lambda: slow.held.wait(5) and slow.released.set()).start()
        assert canary_requests(prom) == 1000
    finally:
        slow.released.set()
        prom.close()


def test_reads_begin_at_most_every_twice_the_last_reads_duration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reads on their own thread are paced: a read of a second is followed by none for
    another second, whatever the ticks ask (Prometheus and the reader spend at most half
    their time reading)."""
    slow, clock = SlowPrometheus(), Clock()
    slow.clock = clock
    monkeypatch.setattr(prometheus, "time", clock)
    prom = slow.source(wait_s=0.01)
    try:
        assert canary_requests(prom) == 900  # read from 100 to 101: the next from 102
        slow.move(1000)
        sent = len(slow.queries)
        clock.now = 101.9
        assert [canary_requests(prom) for _ in range(5)] == [900] * 5
        assert len(slow.queries) == sent  # not even the news
        clock.now = 102.0
        until(lambda: canary_requests(prom) == 1000, 5, "no read after the pause")
    finally:
        prom.close()
