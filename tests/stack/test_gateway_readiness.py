"""The gateway's split follows its versions' readiness: a dead upstream's share goes to
the ready versions, and comes back when it is ready again."""

from __future__ import annotations

from collections import Counter

import httpx
import numpy as np
import pytest

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from tests.conftest import metric_value
from tests.support.waits import until

pytestmark = pytest.mark.slow
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {
    "inputs": [
        {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": np.zeros(64).tolist()}
    ]
}


def gateway(models: dict[str, object], **settings: object) -> GatewayServer:
    lines: list[str] = []
    server = GatewayServer(
        Gateway(parse_config({"models": models, **settings}, "test"), TOKEN, say=lines.append)
    )
    server.lines = lines  # type: ignore[attr-defined]
    server.start()
    return server


def answered_by(url: str, count: int) -> Counter[str]:
    versions: Counter[str] = Counter()
    for _ in range(count):
        reply = httpx.post(f"{url}/v2/models/digits/infer", json=BODY)
        versions[f"{reply.status_code} {reply.headers.get('x-modelcanary-version')}"] += 1
    return versions


def view(url: str) -> dict[str, object]:
    found: dict[str, object] = httpx.get(f"{url}/admin/models/digits/weights", headers=AUTH).json()
    return found


def test_a_dead_versions_share_goes_to_the_ready_one_until_it_is_back(triton: str) -> None:
    # version 2 behind a relay (a second gateway) that can die and come back on its port
    relay = gateway({"digits": {"stable": "2", "upstreams": {"2": triton}}})
    front = gateway(
        {
            "digits": {
                "stable": "1",
                "upstreams": {"1": triton, "2": relay.url},
                "weights": {"1": 50, "2": 50},
            }
        },
        readiness_interval_s=0.2,
    )
    try:
        assert set(answered_by(front.url, 40)) == {"200 1", "200 2"}
        relay.stop()
        until(lambda: view(front.url)["unready"] == ["2"], 5, "version 2 never unready")
        assert view(front.url)["weights"] == {"1": 50, "2": 50}  # as asked
        assert view(front.url)["serving"] == {"1": 100, "2": 0}
        assert answered_by(front.url, 40) == {"200 1": 40}  # none refused
        relay.restart()
        until(lambda: view(front.url)["unready"] == [], 5, "version 2 never ready again")
        assert view(front.url)["serving"] == {"1": 50, "2": 50}
        assert set(answered_by(front.url, 40)) == {"200 1", "200 2"}
    finally:
        front.stop()
        relay.stop()
    lines: list[str] = front.lines  # type: ignore[attr-defined]
    assert lines == [
        "gateway: digits version 2 not ready; serving 1=100, 2=0",
        "gateway: digits version 2 ready again; serving 1=50, 2=50",
    ]


def test_a_refused_request_marks_its_version_unready_at_once(triton: str) -> None:
    relay = gateway({"digits": {"stable": "2", "upstreams": {"2": triton}}})
    front = gateway(
        {
            "digits": {
                "stable": "1",
                "upstreams": {"1": triton, "2": relay.url},
                "weights": {"1": 50, "2": 50},
            }
        },
        readiness_interval_s=30,
    )
    try:
        relay.stop()
        outcomes = answered_by(front.url, 40)  # long before the next probe
        # the one refused request was retried on stable; only it reached version 2
        assert outcomes == {"200 1": 40}, outcomes
        metrics = f"{front.url}/metrics"
        assert metric_value(metrics, "modelcanary_gateway_requests", version="2") == 1
        assert metric_value(metrics, "modelcanary_gateway_requests", code="502") == 1
        assert view(front.url)["unready"] == ["2"]
    finally:
        front.stop()
        relay.stop()
