"""A version served by several replicas: the gateway balances its requests over them,
skips one that is down or hung while the others serve (a request it refused or left
hanging is sent to another), and calls the version unready only when all of them are."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.stack.test_gateway_readiness import AUTH, answered_by, gateway, view
from tests.support.tcp_proxy import TcpProxy
from tests.support.waits import until

pytestmark = pytest.mark.slow


def answered(relay_url: str) -> float:
    """Inference requests the relay (a replica) answered 200."""
    text = httpx.get(f"{relay_url}/metrics").text
    found = re.search(r'modelcanary_gateway_requests_total\{[^}]*code="200"[^}]*\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def down(url: str, version: str = "1") -> list[str]:
    replicas: dict[str, dict[str, list[str]]] = view(url)["replicas"]  # type: ignore[assignment]
    return replicas[version]["down"]


def test_requests_are_balanced_and_a_dead_replica_is_skipped_until_it_is_back(
    triton: str,
) -> None:
    relays = [gateway({"digits": {"stable": "1", "upstreams": {"1": triton}}}) for _ in "ab"]
    urls = [r.url for r in relays]
    front = gateway({"digits": {"stable": "1", "upstreams": {"1": urls}}}, readiness_interval_s=0.2)
    try:
        assert answered_by(front.url, 40) == {"200 1": 40}
        assert [answered(u) for u in urls] == [20, 20]  # round-robin
        relays[1].stop()
        until(lambda: down(front.url) == [urls[1]], 5, "the dead replica not marked down")
        assert view(front.url)["unready"] == []  # the other replica serves the version
        assert answered_by(front.url, 40) == {"200 1": 40}  # none sent to the dead one
        assert answered(urls[0]) == 60
        relays[1].restart()
        until(lambda: down(front.url) == [], 5, "the replica not back")
        assert answered_by(front.url, 40) == {"200 1": 40}
        assert [answered(u) for u in urls] == [80, 40]  # 20 each again
    finally:
        front.stop()
        for relay in relays:
            relay.stop()
    lines: list[str] = front.lines  # type: ignore[attr-defined]
    assert lines == [
        f"gateway: digits version 1 replica {urls[1]} not ready; 1 of 2 replicas ready",
        f"gateway: digits version 1 replica {urls[1]} ready again; 2 of 2 replicas ready",
    ]


def test_a_refused_request_goes_to_another_replica_and_only_all_refusing_is_unready(
    triton: str,
) -> None:
    relays = [gateway({"digits": {"stable": "2", "upstreams": {"2": triton}}}) for _ in "ab"]
    urls = [r.url for r in relays]
    front = gateway(
        {
            "digits": {
                "stable": "1",
                "upstreams": {"1": triton, "2": urls},
                "weights": {"1": 50, "2": 50},
            }
        },
        readiness_interval_s=30,
        retry={"enabled": False},  # the replicas alone: no second chance on stable
    )
    try:
        relays[0].stop()
        outcomes = answered_by(front.url, 40)  # long before the next probe
        assert set(outcomes) == {"200 1", "200 2"}, outcomes  # none refused: the other one
        assert down(front.url, "2") == [urls[0]] and view(front.url)["unready"] == []
        relays[1].stop()
        outcomes = answered_by(front.url, 40)  # one tried both, then version 2 is unready
        assert outcomes["502 2"] == 1 and outcomes["200 1"] == 39, outcomes
        assert view(front.url)["unready"] == ["2"]
        ready = httpx.get(f"{front.url}/v2/models/digits/ready")
        assert ready.status_code == 503 and "version 2" in ready.json()["error"]
    finally:
        front.stop()
        for relay in relays:
            relay.stop()


def test_a_hung_replica_is_skipped_and_its_waiting_requests_go_to_another(triton: str) -> None:
    port = int(triton.rsplit(":", 1)[1])
    proxy = TcpProxy(port).start()
    hung_url = f"http://127.0.0.1:{proxy.port}"
    front = gateway(
        {"digits": {"stable": "1", "upstreams": {"1": [triton, hung_url]}}},
        readiness_interval_s=0.2,
    )
    try:
        assert answered_by(front.url, 10) == {"200 1": 10}
        proxy.hold()  # accepts, answers nothing: a stopped Triton
        # one waits on the hung one until a probe finds it hung, then goes to the other
        assert answered_by(front.url, 10) == {"200 1": 10}
        assert down(front.url) == [hung_url]
        assert view(front.url)["unready"] == []
        assert answered_by(front.url, 20) == {"200 1": 20}
        ready = httpx.get(f"{front.url}/v2/models/digits/ready")
        assert ready.status_code == 200
        proxy.release()
        until(lambda: down(front.url) == [], 5, "a replica stayed down")
        assert httpx.get(f"{front.url}/admin/models/digits/weights", headers=AUTH).is_success
    finally:
        front.stop()
        proxy.cut()
