"""The gateway's gRPC server runs in a thread of its own: when that thread dies, the
gateway's health says so (HTTP keeps serving), and the supervisor of `modelcanary up`
restarts it on the same address."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import tritonclient.grpc as grpcclient

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.grpc_server import GrpcServer
from modelcanary.gateway.server import GatewayServer
from modelcanary.local.supervisor import Backoff, Supervisor
from modelcanary.serving.triton_server import TritonServer
from modelcanary.waiting import wait_until
from tests.stack.test_gateway_grpc import infer, served_by

pytestmark = pytest.mark.slow


@pytest.fixture
def servers(faulty_triton: TritonServer) -> Iterator[tuple[GatewayServer, GrpcServer]]:
    endpoints = faulty_triton.endpoints
    assert endpoints is not None
    route = {
        "stable": "1",
        "upstreams": {"1": endpoints.http},
        "grpc_upstreams": {"1": endpoints.grpc},
    }
    gateway = Gateway(parse_config({"models": {"digits": route}}, "test"), "token")
    http, rpc = GatewayServer(gateway), GrpcServer(gateway)
    http.start()
    rpc.start()
    try:
        yield http, rpc
    finally:
        rpc.stop()
        http.stop()


def crash(rpc: GrpcServer) -> None:
    """End the gRPC server's thread as a crash would: its event loop stops under it."""
    assert rpc.loop is not None
    rpc.loop.call_soon_threadsafe(rpc.loop.stop)
    assert wait_until(lambda: rpc.exited() is not None, 10)


def test_a_dead_grpc_server_makes_the_gateway_unhealthy_until_restarted(
    servers: tuple[GatewayServer, GrpcServer],
) -> None:
    http, rpc = servers
    address = rpc.address
    for path in ("/v2/health/ready", "/v2/health/live"):
        assert httpx.get(f"{http.url}{path}").status_code == 200
    crash(rpc)
    for path in ("/v2/health/ready", "/v2/health/live"):
        reply = httpx.get(f"{http.url}{path}")
        assert reply.status_code == 503, path
        assert reply.json()["error"].startswith(f"the gateway's gRPC server on {address} stopped")
    body = {
        "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]
    }
    assert httpx.post(f"{http.url}/v2/models/digits/infer", json=body).status_code == 200
    assert rpc.restart() == address  # the same port
    assert httpx.get(f"{http.url}/v2/health/ready").status_code == 200
    assert served_by(infer(grpcclient.InferenceServerClient(address))) == "1"


def test_the_supervisor_restarts_a_dead_grpc_server(
    servers: tuple[GatewayServer, GrpcServer],
) -> None:
    _, rpc = servers
    lines: list[str] = []
    supervisor = Supervisor(None, lines.append, Backoff(first_s=0.1), every_s=0.05)
    supervisor.watch("gateway gRPC", rpc)
    try:
        crash(rpc)
        assert wait_until(lambda: rpc.exited() is None and any("restarted" in x for x in lines), 20)
        client = grpcclient.InferenceServerClient(rpc.address)
        assert served_by(infer(client)) == "1"
    finally:
        supervisor.stop()
        supervisor.join()
    assert lines[0].startswith("supervisor: gateway gRPC died (its server thread ended")
