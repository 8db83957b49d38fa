"""The project's onnxruntime backend on the real Triton: inputs the runtime rejects are
the client's mistake (400, one line naming the inputs, no file paths), never the
version's failures, and they do not fail the requests batched with them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from modelcanary.cli import main
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer
from tests.conftest import PROJECT, metric_value

pytestmark = pytest.mark.slow
FAILURES = "nv_inference_request_failure"
LABELS = {"model": "tokens", "version": "1"}


@pytest.fixture(scope="module")
def server(
    triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """Triton serving `tokens` (tests.fixture_models:token_classifier, a vocabulary of 100),
    whose batcher waits up to 1 s to fill a batch of 2."""
    repo = tmp_path_factory.mktemp("tokens") / "repo"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT)
        line = (
            "export --model tests.fixture_models:token_classifier --name tokens"
            " --input input_ids:int64:-1 --input attention_mask:int64:-1 --golden-samples 4"
            " --instances 1 --dynamic-batching --preferred-batch-size 2 --max-queue-delay-us 1000000"
        )
        code = main([*line.split(), "--repo", str(repo)])
    assert code == 0
    run_dir = tmp_path_factory.mktemp("run")
    with TritonServer(repo, run_dir, triton_home) as server:
        server.start()
        server.load("tokens", [1])
        yield server


def infer(server: TritonServer, ids: list[int], mask: list[int]) -> httpx.Response:
    assert server.endpoints is not None
    body = {
        "inputs": [
            {"name": "input_ids", "shape": [1, len(ids)], "datatype": "INT64", "data": ids},
            {"name": "attention_mask", "shape": [1, len(mask)], "datatype": "INT64", "data": mask},
        ]
    }
    return httpx.post(f"{server.endpoints.http}/v2/models/tokens/infer", json=body, timeout=10)


def failures(server: TritonServer) -> float:
    assert server.endpoints is not None
    return metric_value(server.endpoints.metrics, FAILURES, **LABELS)


@pytest.mark.parametrize(
    ("ids", "mask", "message"),
    [
        (
            [1] * 8,
            [1] * 6,
            "invalid input for tokens:1 (input_ids int64 (1, 8), attention_mask int64 (1, 6)): "
            "Mul: Attempting to broadcast an axis by a dimension other than 1. 6 by 8",
        ),
        (
            [1, 2, 150, 3],
            [1] * 4,
            "invalid input for tokens:1 (input_ids int64 (1, 4), attention_mask int64 (1, 4)): "
            "Gather: indices element out of data bounds, idx=150 must be within the inclusive "
            "range [-100,99]",
        ),
    ],
    ids=["lengths-differ", "id-beyond-vocabulary"],
)
def test_inputs_the_runtime_rejects_are_400_and_not_the_versions_failures(
    server: TritonServer, ids: list[int], mask: list[int], message: str
) -> None:
    before = failures(server)
    response = infer(server, ids, mask)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error == message
    assert "/" not in error.replace("tokens:1 (", "") and "At:" not in error
    assert infer(server, [1, 2, 3], [1, 1, 1]).status_code == 200
    assert failures(server) == before


def test_grpc_clients_get_invalid_argument(server: TritonServer) -> None:
    assert server.endpoints is not None
    client = grpcclient.InferenceServerClient(server.endpoints.grpc)
    ids = grpcclient.InferInput("input_ids", [1, 3], "INT64")
    ids.set_data_from_numpy(np.array([[1, 500, 2]], np.int64))
    mask = grpcclient.InferInput("attention_mask", [1, 3], "INT64")
    mask.set_data_from_numpy(np.ones((1, 3), np.int64))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("tokens", [ids, mask])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "idx=500 must be within the inclusive range" in raised.value.message()


def test_a_rejected_request_does_not_fail_the_request_batched_with_it(
    server: TritonServer,
) -> None:
    """Same shapes, so the batcher runs them as one onnxruntime call: the bad ids fail
    that call, and the good request is answered from a run of its own."""
    assert server.endpoints is not None
    metrics = server.endpoints.metrics
    executions = metric_value(metrics, "nv_inference_exec_count", **LABELS)
    before = failures(server)
    answers: dict[str, httpx.Response] = {}

    def send(name: str, ids: list[int]) -> None:
        answers[name] = infer(server, ids, [1, 1, 1, 1])

    threads = [
        threading.Thread(target=send, args=("good", [1, 2, 3, 4])),
        threading.Thread(target=send, args=("bad", [1, 2, 3, 400])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers["bad"].status_code == 400
    assert "idx=400" in answers["bad"].json()["error"]
    assert answers["good"].status_code == 200, answers["good"].text
    alone = infer(server, [1, 2, 3, 4], [1, 1, 1, 1]).json()["outputs"][0]["data"]
    assert answers["good"].json()["outputs"][0]["data"] == pytest.approx(alone, rel=1e-5)
    # one batch of two (a third call for `alone`): they really did share an execution
    assert metric_value(metrics, "nv_inference_exec_count", **LABELS) == executions + 2
    assert failures(server) == before
