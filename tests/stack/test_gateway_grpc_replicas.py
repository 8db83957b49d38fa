"""gRPC to a version served by several replicas (two real Tritons): the gateway balances
its gRPC requests over them as it does HTTP's, and a replica that dies under gRPC traffic
costs no request (another replica takes it)."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.grpc_server import GrpcServer
from modelcanary.gateway.server import GatewayServer
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import Endpoints, TritonServer
from modelcanary.waiting import wait_until
from tests.conftest import metric_value
from tests.stack.test_gateway_grpc import infer, served_by

pytestmark = pytest.mark.slow
SUCCESS = "nv_inference_request_success"


@pytest.fixture(scope="module")
def tritons(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[TritonServer]]:
    """Two real Tritons, each serving digits 1 and 2: two replicas of each version."""
    servers = [
        TritonServer(digits_repo, tmp_path_factory.mktemp("replica"), triton_home) for _ in "ab"
    ]
    try:
        for server in servers:
            server.start()
            server.load("digits", [1, 2])
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def gateway(tritons: list[TritonServer]) -> Iterator[tuple[str, str]]:
    """A gateway in front of both replicas (HTTP and gRPC); (HTTP URL, gRPC address)."""
    endpoints = [e for e in (t.endpoints for t in tritons) if e is not None]
    route = {
        "stable": "1",
        "upstreams": {v: [e.http for e in endpoints] for v in ("1", "2")},
        "grpc_upstreams": {v: [e.grpc for e in endpoints] for v in ("1", "2")},
        "weights": {"1": 50, "2": 50},
    }
    # probes far apart: a dead replica is found by the requests it refuses, not a probe;
    # no retry on stable: the replicas alone take a dead one's requests
    settings = {"readiness_interval_s": 60, "retry": {"enabled": False}}
    config = parse_config({"models": {"digits": route}, **settings}, "test")
    app = Gateway(config, "token")
    http, rpc = GatewayServer(app), GrpcServer(app)
    try:
        yield http.start(), rpc.start()
    finally:
        rpc.stop()
        http.stop()


def successes(endpoints: Endpoints) -> dict[str, float]:
    """A Triton replica's own count of successful inferences, by version."""
    return {v: metric_value(endpoints.metrics, SUCCESS, model="digits", version=v) for v in "12"}


def test_grpc_requests_are_balanced_over_each_versions_replicas(
    gateway: tuple[str, str], tritons: list[TritonServer]
) -> None:
    _, address = gateway
    endpoints = [e for e in (t.endpoints for t in tritons) if e is not None]
    before = [successes(e) for e in endpoints]
    client = grpcclient.InferenceServerClient(address)
    served = Counter(served_by(infer(client)) for _ in range(80))
    assert set(served) == {"1", "2"}, served
    after = [successes(e) for e in endpoints]
    for version in ("1", "2"):  # round-robin: half of each version's requests on each replica
        grown = [a[version] - b[version] for a, b in zip(after, before, strict=True)]
        assert sum(grown) == served[version], (version, grown)
        assert abs(grown[0] - grown[1]) <= 1, (version, grown)


def test_a_replica_killed_under_grpc_traffic_loses_no_request(
    gateway: tuple[str, str], tritons: list[TritonServer]
) -> None:
    url, address = gateway
    victim = tritons[1]
    assert victim.pid is not None and victim.endpoints is not None
    failures: list[str] = []
    answered: Counter[str] = Counter()
    stop = threading.Event()

    def send() -> None:
        client = grpcclient.InferenceServerClient(address)
        while not stop.is_set():
            try:
                answered[served_by(infer(client))] += 1
            except InferenceServerException as exc:
                failures.append(str(exc))

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    try:
        assert wait_until(lambda: sum(answered.values()) >= 100, 60)
        os.killpg(victim.pid, signal.SIGKILL)  # no goodbye: in-flight requests are cut
        killed_at = sum(answered.values())
        assert wait_until(lambda: sum(answered.values()) >= killed_at + 200, 60)
    finally:
        stop.set()
        for sender in senders:
            sender.join(30)
    try:
        assert failures == [], failures[:3]
        assert set(answered) == {"1", "2"}
        routes = httpx.get(
            f"{url}/admin/models/digits/weights", headers={"Authorization": "Bearer token"}
        ).json()
        dead = victim.endpoints.http
        assert {v: r["down"] for v, r in routes["replicas"].items()} == {"1": [dead], "2": [dead]}
        assert routes["unready"] == []
    finally:
        victim.restart()
