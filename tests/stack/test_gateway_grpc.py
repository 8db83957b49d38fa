"""KServe v2 gRPC through the gateway, in front of the real Triton: the split, pinning,
client errors, the retry on stable, and what the gateway refuses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from scipy.stats import binom
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.grpc_server import GrpcServer
from modelcanary.gateway.server import GatewayServer
from modelcanary.process import free_ports
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_server import TritonServer
from tests.conftest import metric_value
from tests.support.gateway import CLIENT_ERRORS, HEADER, X
from tests.support.triton import grpc_control_calls
from tests.support.waits import until

pytestmark = pytest.mark.slow
REQUESTS = "modelcanary_gateway_requests_total"
Start = Callable[..., tuple[str, str]]


@pytest.fixture
def start(faulty_triton: TritonServer, digits_repo: Path) -> Iterator[Start]:
    """Start a gateway for digits 1 and 2 with these weights; (HTTP URL, gRPC address)."""
    servers: list[GatewayServer | GrpcServer] = []
    assert faulty_triton.endpoints is not None
    endpoints = faulty_triton.endpoints

    def start(
        weights: dict[str, int],
        grpc_versions: tuple[str, ...] = ("1", "2"),
        http_upstreams: dict[str, str] | None = None,
        **limits: object,
    ) -> tuple[str, str]:
        route = {
            "stable": "1",
            "upstreams": http_upstreams or {"1": endpoints.http, "2": endpoints.http},
            "grpc_upstreams": {v: endpoints.grpc for v in grpc_versions},
            "weights": weights,
        }
        config = parse_config(
            {"models": {"digits": route}, "shadow": {"repository": str(digits_repo)}, **limits},
            "test",
        )
        gateway = Gateway(config, "token")
        http, rpc = GatewayServer(gateway), GrpcServer(gateway)
        servers.extend([http, rpc])
        return http.start(), rpc.start()

    yield start
    for server in servers:
        server.stop()


def infer(
    client: grpcclient.InferenceServerClient, x: np.ndarray = X[:1], **options: object
) -> grpcclient.InferResult:
    tensor = grpcclient.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("digits", [tensor], **options)


def served_by(result: grpcclient.InferResult) -> str:
    return str(result.get_response().model_version)


def metric(url: str, name: str, **labels: str) -> float:
    return metric_value(f"{url}/metrics", name, **labels)


def test_grpc_inference_is_split_by_weight(start: Start, digits_repo: Path) -> None:
    url, address = start({"1": 70, "2": 30})
    client = grpcclient.InferenceServerClient(address)
    served = Counter(served_by(infer(client)) for _ in range(400))
    low, high = binom.ppf([1e-6, 1 - 1e-6], 400, 0.3)
    assert set(served) == {"1", "2"} and low <= served["2"] <= high, served
    for version in ("1", "2"):  # counted in the same series as HTTP
        assert metric(url, REQUESTS, version=version, code="200") == served[version]
    result = infer(client, X)
    assert result.as_numpy("logits").shape == (3, 10)


def test_grpc_requests_pinned_to_a_version(start: Start) -> None:
    _, address = start({"1": 100, "2": 0})
    client = grpcclient.InferenceServerClient(address)
    assert served_by(infer(client, model_version="2")) == "2"
    assert served_by(infer(client, headers={HEADER: "2"})) == "2"
    assert served_by(infer(client)) == "1"
    with pytest.raises(InferenceServerException, match="has no version '9'") as caught:
        infer(client, model_version="9")
    assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_a_version_without_a_grpc_upstream_is_a_configuration_error(start: Start) -> None:
    url, address = start({"1": 0, "2": 100}, grpc_versions=("1",))
    client = grpcclient.InferenceServerClient(address)
    with pytest.raises(InferenceServerException, match="has no gRPC upstream") as caught:
        infer(client)
    assert caught.value.status() == "StatusCode.FAILED_PRECONDITION"
    assert metric(url, REQUESTS, version="2") == 0  # not the version's failure, no retry
    assert metric(url, "modelcanary_gateway_retries_total") == 0
    assert served_by(infer(client, model_version="1")) == "1"


def test_a_version_found_unready_is_not_waited_for(
    start: Start, faulty_triton: TritonServer
) -> None:
    """Version 2's readiness probes (over HTTP) fail: a gRPC request pinned to it is
    UNAVAILABLE at once, as HTTP's 503, instead of waiting for the upstream."""
    (dead,) = free_ports(1)
    assert faulty_triton.endpoints is not None
    upstreams = {"1": faulty_triton.endpoints.http, "2": f"http://127.0.0.1:{dead}"}
    url, address = start({"1": 50, "2": 50}, http_upstreams=upstreams, readiness_interval_s=0.2)
    admin = f"{url}/admin/models/digits/weights"
    auth = {"Authorization": "Bearer token"}
    until(
        lambda: httpx.get(admin, headers=auth).json()["unready"] == ["2"],
        10,
        "version 2 never unready",
    )
    client = grpcclient.InferenceServerClient(address)
    with pytest.raises(
        InferenceServerException, match="version 2 of digits is not ready"
    ) as caught:
        infer(client, model_version="2")
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    assert metric(url, REQUESTS, version="2", code="503") == 1
    assert {served_by(infer(client)) for _ in range(10)} == {"1"}  # the split skips it


def test_grpc_client_errors_are_not_the_versions(start: Start) -> None:
    url, address = start({"1": 0, "2": 100})
    client = grpcclient.InferenceServerClient(address)
    wrong = np.zeros((1, 63), dtype=np.float32)  # Triton's INVALID_ARGUMENT: a shape it refuses
    with pytest.raises(InferenceServerException, match="unexpected shape") as caught:
        infer(client, wrong)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert metric(url, CLIENT_ERRORS, version="2", reason="invalid_request") == 1
    # the gateway's own checks: a batch above max_batch_size, raw bytes the shape denies
    with pytest.raises(InferenceServerException, match="exceeds the model's max batch size"):
        infer(client, np.zeros((10_000, 64), dtype=np.float32))
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
    request = pb.ModelInferRequest(model_name="digits", raw_input_contents=[b"\0" * 100])
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 1 << 40])
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "takes 4398046511104 bytes; its raw_input_contents has 100" in refused.value.details()
    assert metric(url, CLIENT_ERRORS, version="2", reason="invalid_tensors") == 1
    assert metric(url, CLIENT_ERRORS, version="2", reason="batch_too_large") == 1
    server_errors = sum(metric(url, REQUESTS, version="2", code=c) for c in ("500", "502"))
    assert server_errors == 0


def test_a_failing_canary_fails_no_grpc_user(start: Start, faulty_triton: TritonServer) -> None:
    url, address = start({"1": 50, "2": 50})
    faults_dir = faulty_triton.faults_dir
    assert faults_dir is not None
    set_faults(faults_dir, "digits", 2, FaultSpec(error_ratio=1.0))
    try:
        client = grpcclient.InferenceServerClient(address)
        served = Counter(served_by(infer(client)) for _ in range(100))
        assert served == {"1": 100}
        failed = metric(url, REQUESTS, version="2", code="500")
        assert failed > 20
        retried = "modelcanary_gateway_retries_total"
        assert metric(url, retried, from_version="2", to_version="1", outcome="answered") == failed
        with pytest.raises(InferenceServerException, match="injected fault"):
            infer(client, model_version="2")  # pinned: the client's choice, no retry
    finally:
        set_faults(faults_dir, "digits", 2, FaultSpec())


def test_grpc_reads_pass_through_and_control_is_refused(start: Start) -> None:
    _, address = start({"1": 50, "2": 50})
    client = grpcclient.InferenceServerClient(address)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "2")
    assert client.get_model_metadata("digits", "2").versions == ["2"]
    infer(client, model_version="2")
    stats = client.get_inference_statistics("digits", "2").model_stats
    assert [s.version for s in stats] == ["2"] and stats[0].inference_stats.success.count >= 1
    every = client.get_inference_statistics("digits").model_stats
    assert {s.version for s in every} == {"1", "2"}
    # the model's public config, from the gateway's repository (what perf_analyzer asks)
    config = client.get_model_config("digits", "2").config
    assert (config.name, config.max_batch_size, config.backend) == ("digits", 32, "onnxruntime")
    assert [(t.name, list(t.dims)) for t in (*config.input, *config.output)] == [
        ("pixels", [64]),
        ("logits", [10]),
    ]
    assert not config.instance_group and not config.HasField("dynamic_batching")
    with pytest.raises(InferenceServerException, match="has no version '9'"):
        client.get_model_config("digits", "9")
    for refused in grpc_control_calls(client):
        with pytest.raises(InferenceServerException, match="control API") as caught:
            refused()
        assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
    with pytest.raises(grpc.RpcError) as stream:
        list(stub.ModelStreamInfer(iter([pb.ModelInferRequest(model_name="digits")])))
    assert stream.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "does not split streams" in stream.value.details()
    assert client.is_model_ready("digits")  # Triton unchanged


def test_grpc_requests_are_mirrored_to_the_shadow_canary(start: Start) -> None:
    url, address = start({"1": 100, "2": 0})
    auth = {"Authorization": "Bearer token"}
    shadow = {"canary": "2", "percent": 100}
    assert httpx.put(f"{url}/admin/shadow/digits", json=shadow, headers=auth).status_code == 200
    client = grpcclient.InferenceServerClient(address)
    for _ in range(10):
        assert served_by(infer(client)) == "1"  # one sample each
    pairs = "modelcanary_shadow_pairs"
    until(lambda: metric(url, pairs, version="2") >= 10, 30, "10 gRPC requests not compared")
    assert metric(url, pairs, version="2", output="logits") == 10
    assert metric(url, "modelcanary_shadow_dropped", version="2") == 0
