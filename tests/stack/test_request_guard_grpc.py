"""The request guard's gRPC (issue 21: gRPC is how most Triton users call it) in front of
the real Triton's gRPC: inference checked as the gateway checks it (the requests that would
make Triton allocate what was never sent are INVALID_ARGUMENT and Triton keeps its pid),
reads passed through for the models served, control RPCs refused without the key ever
being forwarded, streams refused."""

# ruff: noqa: F811 (the fixture imported from the hostile-request tests is a parameter)

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from modelcanary.gateway.guard import RequestGuard
from modelcanary.gateway.guard_grpc import GuardGrpc, GuardGrpcServer
from modelcanary.process import free_ports
from modelcanary.serving.triton_server import TritonServer
from tests.stack.test_gateway import X
from tests.stack.test_gateway_hostile_requests import served  # noqa: F401
from tests.stack.test_request_guard import BLOCK_TRITONCLIENT
from tests.support.triton import grpc_control_calls
from tests.support.waits import until

pytestmark = pytest.mark.slow
Start = Callable[[Path | None, str | None], str]


@pytest.fixture(scope="module")
def start(served: TritonServer) -> Iterator[Start]:
    """Start the guard's gRPC in front of the module's Triton: with a repository (the max
    batch size and the public config from it) or else a control key; its address."""
    servers: list[GuardGrpcServer] = []
    assert served.endpoints is not None
    http, grpc_address = served.endpoints.http, served.endpoints.grpc

    def start(repository: Path | None, key: str | None) -> str:
        guard = RequestGuard(http, ["digits"], repository, 1 << 20, 30, key)
        server = GuardGrpcServer(
            GuardGrpc(guard, grpc_address, repository), "127.0.0.1", 0, 1 << 20
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def infer(address: str, pixels: np.ndarray, version: str = "") -> np.ndarray:
    client = grpcclient.InferenceServerClient(address)
    tensor = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    answer = client.infer("digits", [tensor], model_version=version)
    logits = answer.as_numpy("logits")
    assert logits is not None
    return logits


def raw_request(shape: list[int], raw: bytes, **parameters: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="digits", raw_input_contents=[raw])
    tensor = request.inputs.add(name="pixels", datatype="FP32", shape=shape)
    for name, value in parameters.items():
        tensor.parameters[name].string_param = value
    return request


# What would make Triton allocate what was never sent, or batch beyond its limit.
PROBES = {
    "a shape of 2^40 elements, 100 bytes sent": (
        raw_request([1, 1 << 40], b"\0" * 100),
        "takes 4398046511104 bytes",
    ),
    "a batch of 1000": (raw_request([1000, 64], bytes(1000 * 256)), "max batch size of 32"),
    "a negative dimension": (raw_request([-1, 64], bytes(256)), "non-negative"),
    "shared memory": (raw_request([1, 64], bytes(256), shared_memory_region="r"), "shared memory"),
    "typed contents short of the shape": (
        pb.ModelInferRequest(
            model_name="digits",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="pixels",
                    datatype="FP32",
                    shape=[1, 1 << 20],
                    contents=pb.InferTensorContents(fp32_contents=[0.0]),
                )
            ],
        ),
        "holds 1048576 elements; its contents have 1",
    ),
}


@pytest.mark.parametrize("with_repository", [True, False])
def test_the_probes_are_invalid_argument_and_triton_lives(
    served: TritonServer, start: Start, digits_repo: Path, with_repository: bool
) -> None:
    """The batch limit from the repository, or asked of Triton's gRPC with the key."""
    key = None if with_repository else served.control_key
    address = start(digits_repo if with_repository else None, key)
    pid = served.pid
    assert infer(address, X[:1]).shape == (1, 10)  # the first infer learns the batch size
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
    for name, (request, message) in PROBES.items():
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        details = refused.value.details() or ""
        assert message in details and "\n" not in details, (name, details)
    assert served.exited() is None and served.pid == pid
    assert infer(address, X, version="2").shape == (3, 10)


def test_triton_blaming_the_request_is_its_invalid_argument(
    start: Start, digits_repo: Path
) -> None:
    address = start(digits_repo, None)
    with pytest.raises(InferenceServerException, match="unexpected shape") as caught:
        infer(address, np.zeros((1, 63), dtype=np.float32))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_reads_pass_through_and_control_is_refused(
    served: TritonServer, start: Start, digits_repo: Path
) -> None:
    address = start(digits_repo, served.control_key)
    client = grpcclient.InferenceServerClient(address)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "triton"
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "2")
    assert client.get_model_metadata("digits", "2").versions == ["2"]
    stats = client.get_inference_statistics("digits").model_stats
    assert {s.version for s in stats} == {"1", "2"}
    config = client.get_model_config("digits").config  # the public part, from the repository
    assert (config.name, config.max_batch_size) == ("digits", 32) and not config.instance_group
    with pytest.raises(InferenceServerException, match="no model 'other' behind this guard"):
        client.get_model_metadata("other")
    with pytest.raises(InferenceServerException, match="name a model"):
        client.get_inference_statistics()
    for refused in grpc_control_calls(client):
        with pytest.raises(InferenceServerException, match="control API") as caught:
            refused()
        assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
        assert "\n" not in str(caught.value)
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
    with pytest.raises(grpc.RpcError) as stream:
        list(stub.ModelStreamInfer(iter([pb.ModelInferRequest(model_name="digits")])))
    assert stream.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert client.is_model_ready("digits", "1") and client.is_model_ready("digits", "2")


def test_without_a_repository_the_config_is_not_triton_s(
    served: TritonServer, start: Start
) -> None:
    """Even holding the control key (for the batch size), the guard never forwards
    ModelConfig: Triton's config is a control API."""
    client = grpcclient.InferenceServerClient(start(None, served.control_key))
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_config("digits")
    assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_the_command_serves_grpc_in_front_of_triton(served: TritonServer) -> None:
    assert served.endpoints is not None
    http_port, grpc_port = free_ports(2)
    http, grpc_upstream = served.endpoints.http, served.endpoints.grpc
    guard_flags = f"guard --model digits --upstream {http} --listen 127.0.0.1:{http_port}"
    grpc_flags = f"--grpc-upstream {grpc_upstream} --grpc-listen 127.0.0.1:{grpc_port}"
    command = [sys.executable, "-m", "modelcanary", *f"{guard_flags} {grpc_flags}".split()]
    guard = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        address = f"127.0.0.1:{grpc_port}"

        def answers() -> bool:
            try:
                return grpcclient.InferenceServerClient(address).is_server_live()
            except InferenceServerException:
                return False

        until(answers, 30, "the guard's gRPC")
        assert infer(address, X).shape == (3, 10)
    finally:
        guard.terminate()
        output, _ = guard.communicate(timeout=30)
    assert "guard's gRPC listening on" in output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc-listen", "127.0.0.1:0"], "--grpc-listen and --grpc-upstream go together"),
        (["--grpc-listen", "x", "--grpc-upstream", "127.0.0.1:1"], "--grpc-listen 'x' is not"),
    ],
)
def test_wrong_grpc_flags_are_one_line(flags: list[str], message: str) -> None:
    guard = ["guard", "--model", "digits", "--upstream", "http://127.0.0.1:1"]
    command = [sys.executable, "-m", "modelcanary", *guard, *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_without_tritonclient_grpc_is_a_one_line_error() -> None:
    """As in the operator's image: the HTTP guard runs there, its gRPC half cannot."""
    command = [
        sys.executable,
        "-c",
        BLOCK_TRITONCLIENT,
        "guard",
        "--model",
        "digits",
        "--upstream",
        "http://127.0.0.1:1",
        "--grpc-listen",
        "127.0.0.1:0",
        "--grpc-upstream",
        "127.0.0.1:1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "--grpc-listen needs grpcio and tritonclient" in done.stderr, done.stderr
