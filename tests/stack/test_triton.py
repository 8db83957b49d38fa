"""The real tritonserver 2.51 on CPU with the Python-based onnxruntime backend."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelcanary.errors import UsageError
from modelcanary.http.triton_control import GRPC_CONTROL_HEADER
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import RESTRICTED_APIS, SHM_DIR, TritonServer
from modelcanary.waiting import wait_until
from tests.conftest import PROJECT, metric_samples, metric_value
from tests.support.triton import CONTROL_REQUESTS, PIN_STABLE, PWN_CONFIG
from tests.support.waits import until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(digits_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits 1 and 2; `batcher`, an MLP whose batcher waits long enough to always batch;
    and `broken`, whose config.pbtxt disagrees with its ONNX graph."""
    root = tmp_path_factory.mktemp("triton") / "model_repo"
    shutil.copytree(digits_repo, root)
    shutil.copytree(root / "digits", root / "broken")
    config = root / "broken" / "config.pbtxt"
    config.write_text(
        config.read_text()
        .replace('name: "digits"', 'name: "broken"')
        .replace("dims: 64", "dims: 65")
    )
    from modelcanary.cli import main

    model = ["--model", "modelcanary.examples.zoo:mlp", "--name", "batcher"]
    layout = ["--input", "INPUT__0:fp32:64", "--golden-samples", "4", "--instances", "1"]
    batching = ["--dynamic-batching", "--preferred-batch-size", "8"]
    delay = ["--max-queue-delay-us", "3000000"]
    code = main(["export", *model, *layout, *batching, *delay, "--repo", str(root)])
    assert code == 0
    return root


@pytest.fixture(scope="module")
def server(
    repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    run_dir = tmp_path_factory.mktemp("run")
    with TritonServer(repo, run_dir, triton_home, faults_dir=run_dir / "faults") as server:
        server.start()
        server.load("digits", [1, 2])
        server.load("batcher", [1])
        yield server


def endpoints(server: TritonServer) -> tuple[str, str, str]:
    assert server.endpoints is not None
    e = server.endpoints
    return e.http.removeprefix("http://"), e.grpc, e.metrics


def reference(repo: Path, model: str, version: int, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repo / model / str(version) / "model.onnx"))
    output: np.ndarray = session.run(None, {session.get_inputs()[0].name: x})[0]
    return output


def http_infer(url: str, x: np.ndarray, version: int, model: str = "digits") -> np.ndarray:
    client = httpclient.InferenceServerClient(url)
    name, out = ("pixels", "logits") if model in ("digits", "broken") else ("INPUT__0", "OUTPUT__0")
    tensor = httpclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result: np.ndarray = client.infer(model, [tensor], model_version=str(version)).as_numpy(out)
    return result


def settled(metrics_url: str, name: str, want: float, **labels: str) -> float:
    """The metric once it reaches `want`, or its last value after 10 s: Triton records a
    call's statistics just after sending its responses, so a scrape may briefly lag."""
    wait_until(lambda: metric_value(metrics_url, name, **labels) >= want, 10)
    return metric_value(metrics_url, name, **labels)


def pixels(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 64)).astype(np.float32)


def test_http_and_grpc_answer_like_onnxruntime_for_both_versions(
    server: TritonServer, repo: Path
) -> None:
    http_url, grpc_url, _ = endpoints(server)
    x = pixels(5)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    answers = {}
    for version in (1, 2):
        want = reference(repo, "digits", version, x)
        np.testing.assert_allclose(http_infer(http_url, x, version), want, rtol=1e-6, atol=1e-6)
        tensor = grpcclient.InferInput("pixels", [5, 64], "FP32")
        tensor.set_data_from_numpy(x)
        got = grpc.infer("digits", [tensor], model_version=str(version)).as_numpy("logits")
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        answers[version] = got
    assert not np.allclose(answers[1], answers[2])  # two different models, side by side


def test_concurrent_requests_run_as_one_batch(server: TritonServer, repo: Path) -> None:
    http_url, _, metrics_url = endpoints(server)
    labels = {"model": "batcher", "version": "1"}
    before = metric_value(metrics_url, "nv_inference_exec_count", **labels)
    before_count = metric_value(metrics_url, "nv_inference_count", **labels)
    results: dict[int, np.ndarray] = {}

    def send(index: int) -> None:
        results[index] = http_infer(http_url, pixels(1, seed=index), 1, model="batcher")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, got in results.items():
        np.testing.assert_allclose(
            got, reference(repo, "batcher", 1, pixels(1, seed=index)), atol=1e-6
        )
    assert len(results) == 8
    count = settled(metrics_url, "nv_inference_count", before_count + 8, **labels)
    assert count == before_count + 8
    # eight requests, one onnxruntime call
    assert metric_value(metrics_url, "nv_inference_exec_count", **labels) == before + 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "pixels", "shape": [1, 63], "datatype": "FP32", "data": [0.0] * 63},
            "unexpected shape for input 'pixels' for model 'digits'. Expected [-1,64], got [1,63]",
        ),
        (
            {"name": "pixels", "shape": [1, 64], "datatype": "INT32", "data": [0] * 64},
            "inference input 'pixels' data-type is 'INT32', but model 'digits' expects 'FP32'",
        ),
        (
            {"name": "pixels", "shape": [40, 64], "datatype": "FP32", "data": [0.0] * 2560},
            "inference request batch-size must be <= 32 for 'digits'",
        ),
    ],
    ids=["shape", "dtype", "batch-too-large"],
)
def test_malformed_requests_get_400_with_tritons_message(
    server: TritonServer, body: dict[str, object], message: str
) -> None:
    assert server.endpoints is not None
    url = f"{server.endpoints.http}/v2/models/digits/versions/1/infer"
    response = httpx.post(url, json={"inputs": [body]}, timeout=5)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_metrics_carry_model_and_version_labels(server: TritonServer) -> None:
    http_url, _, metrics_url = endpoints(server)
    for version in (1, 2):
        http_infer(http_url, pixels(2), version)
    for version in ("1", "2"):
        labels = {"model": "digits", "version": version}
        assert settled(metrics_url, "nv_inference_request_success", 1, **labels) >= 1
        assert metric_value(metrics_url, "nv_inference_request_duration_us", **labels) > 0
        backend_count = "modelcanary_backend_request_duration_seconds_count"
        assert metric_value(metrics_url, backend_count, **labels) >= 1
    buckets = [
        labels
        for name, labels, _ in metric_samples(metrics_url)
        if name == "modelcanary_backend_request_duration_seconds_bucket"
        and labels.get("version") == "1"
    ]
    bounds = sorted(float(b["le"]) for b in buckets if b["le"] != "+Inf")
    assert bounds[0] == 0.001 and bounds[-1] == 10.0 and len(bounds) >= 25


def test_fault_injection_shows_in_tritons_own_metrics(server: TritonServer) -> None:
    http_url, _, metrics_url = endpoints(server)
    assert server.faults_dir is not None
    failures = {"model": "digits", "version": "2", "reason": "BACKEND"}
    before = metric_value(metrics_url, "nv_inference_request_failure", **failures)
    set_faults(server.faults_dir, "digits", 2, FaultSpec(error_ratio=1.0))
    try:
        for _ in range(3):
            with pytest.raises(
                InferenceServerException, match="injected fault: digits:2 fails 100%"
            ):
                http_infer(http_url, pixels(1), 2)
        http_infer(http_url, pixels(1), 1)  # the other version is untouched
        failed_now = settled(metrics_url, "nv_inference_request_failure", before + 3, **failures)
        assert failed_now == before + 3

        set_faults(server.faults_dir, "digits", 2, FaultSpec(error_ratio=0.5))
        failed = 0
        for _ in range(200):
            try:
                http_infer(http_url, pixels(1), 2)
            except InferenceServerException:
                failed += 1
        assert 60 <= failed <= 140  # Binomial(200, 0.5): outside this, p < 1e-8

        set_faults(server.faults_dir, "digits", 2, FaultSpec(latency_ms=300))
        labels = {"model": "digits", "version": "2"}
        name = "modelcanary_backend_request_duration_seconds_sum"
        sum_before = metric_value(metrics_url, name, **labels)
        http_infer(http_url, pixels(1), 2)
        # the injected delay is in the backend's latency histogram
        assert settled(metrics_url, name, sum_before + 0.3, **labels) >= sum_before + 0.3
    finally:
        set_faults(server.faults_dir, "digits", 2, FaultSpec())
    http_infer(http_url, pixels(1), 2)  # cleared: answers again
    # the stubs' log lines reach Triton's log asynchronously, after the responses
    wanted = (
        "FAULT INJECTION ON for digits:2: failing 100% of requests",
        "fault injection off for digits:2",
    )
    wait_until(lambda: all(w in server.log_path.read_text() for w in wanted), 10, every=0.1)
    log = server.log_path.read_text()
    assert wanted[0] in log and wanted[1] in log


def test_a_config_that_disagrees_with_the_graph_fails_to_load(server: TritonServer) -> None:
    with pytest.raises(UsageError) as error:
        server.load("broken", [1])
    assert "Triton could not load broken" in str(error.value)
    assert "input 'pixels' has dims [65] in the config, [64] in the ONNX graph" in str(error.value)


def test_unknown_versions_and_models_are_named(server: TritonServer) -> None:
    with pytest.raises(UsageError, match=r"digits: no version 7 \(versions: 1, 2, 3, 4, 5\)"):
        server.load("digits", [1, 7])
    with pytest.raises(UsageError, match="no model 'cats'"):
        server.load("cats", [1])


def test_control_apis_refuse_requests_without_the_stacks_key(server: TritonServer) -> None:
    """Loading, unloading, the repository index, model config, shared memory, logging and
    trace answer 403 over HTTP and are refused over gRPC, unless the request carries the
    server's control key; inference, metadata and statistics stay open."""
    http, grpc, _ = endpoints(server)
    base = f"http://{http}"
    wrong = {"modelcanary-control": "guess"}
    for method, path, document in CONTROL_REQUESTS:
        for headers in ({}, wrong):
            answer = httpx.request(method, base + path, json=document, headers=headers)
            assert answer.status_code == 403, (path, answer.text)
            assert "This API is restricted" in answer.json()["error"]
    client = grpcclient.InferenceServerClient(grpc)
    refused = [
        lambda h: client.load_model("pwnprobe", config=PWN_CONFIG, headers=h),
        lambda h: client.load_model("digits", config=PIN_STABLE, headers=h),
        lambda h: client.unload_model("digits", headers=h),
        lambda h: client.get_model_repository_index(headers=h),
        lambda h: client.get_model_config("digits", headers=h),
        lambda h: client.get_log_settings(headers=h),
        lambda h: client.get_system_shared_memory_status(headers=h),
    ]
    for call in refused:
        for headers in (None, {GRPC_CONTROL_HEADER: "guess"}):
            with pytest.raises(InferenceServerException, match="This protocol is restricted"):
                call(headers)
    # nothing was loaded or unloaded: both versions still answer, no pwnprobe
    x = pixels(2)
    for version in (1, 2):
        np.testing.assert_allclose(
            http_infer(http, x, version),
            reference(server.repo.root, "digits", version, x),
            rtol=1e-4,
            atol=1e-5,
        )
    assert httpx.get(f"{base}/v2/models/pwnprobe/ready").status_code != 200
    assert httpx.get(f"{base}/v2/models/digits").status_code == 200
    assert httpx.get(f"{base}/v2/models/digits/stats").status_code == 200
    assert client.is_model_ready("digits", "2")
    # the stack's key opens them, over HTTP and gRPC
    index = httpx.post(f"{base}/v2/repository/index", headers=server.control_headers())
    assert index.status_code == 200, index.text
    key = {GRPC_CONTROL_HEADER: server.control_key}
    assert client.get_model_config("digits", headers=key).config.name == "digits"
    restricted = {"model-repository", "model-config", "shared-memory", "logging", "trace"}
    assert set(RESTRICTED_APIS) == restricted


def test_the_stacks_own_loads_send_the_key(
    repo: Path, triton_home: TritonHome, tmp_path: Path
) -> None:
    """`load` and `restart` (which loads again) still work with the APIs restricted."""
    with TritonServer(repo, tmp_path, triton_home) as server:
        server.start()
        server.load("digits", [2])
        server.load("digits", [1, 2])
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        server.restart()
        http, _, _ = endpoints(server)
        for version in (1, 2):
            ready = httpx.get(f"http://{http}/v2/models/digits/versions/{version}/ready")
            assert ready.status_code == 200
        unkeyed = httpx.post(f"http://{http}/v2/repository/models/digits/unload", json={})
        assert unkeyed.status_code == 403


def test_stop_reaps_every_process_and_shared_memory(
    repo: Path, triton_home: TritonHome, tmp_path: Path
) -> None:
    server = TritonServer(repo, tmp_path, triton_home)
    server.start()
    server.load("digits", [1, 2])
    assert server.process is not None
    pid = server.process.pid
    assert list(SHM_DIR.glob(f"{server.shm_prefix}*"))  # the stubs' regions exist while up
    assert server.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process of its group is left: stubs reaped
    assert not list(SHM_DIR.glob(f"{server.shm_prefix}*"))
    assert not list(SHM_DIR.glob("triton_*"))


def serve_digits(repo: Path, run_dir: Path) -> subprocess.Popen[str]:
    """`modelcanary serve` of digits 1 and 2, its output and errors piped."""
    command = [sys.executable, "-m", "modelcanary", "serve", "--repo", str(repo)]
    command += ["--model", "digits", "--versions", "1,2", "--run-dir", str(run_dir)]
    return subprocess.Popen(
        command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_command_stops_cleanly_on_a_signal(
    repo: Path, triton_home: TritonHome, tmp_path: Path, sig: signal.Signals
) -> None:
    run_dir = tmp_path / "run"
    process = serve_digits(repo, run_dir)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C stops it."):
            break
    assert lines[0].startswith("Triton ready: digits versions 1, 2"), lines
    state = json.loads((run_dir / "serve.json").read_text())
    http_infer(state["http"].removeprefix("http://"), pixels(1), 2)
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Triton stopped (exit code 0)" in out
    assert not (run_dir / "serve.json").exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(state["pid"], 0)
    assert not list(SHM_DIR.glob(f"{state['shm_prefix']}*"))


def test_serve_reports_a_missing_model_in_one_line(repo: Path, tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "modelcanary", "serve", "--model", "cats", "--versions", "1"]
    paths = ["--repo", str(repo), "--run-dir", str(tmp_path)]
    completed = subprocess.run(
        [*serve, *paths], cwd=PROJECT, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("modelcanary serve: error: ")
    assert "no model 'cats'" in completed.stderr and completed.stderr.count("\n") == 1


def test_sigterm_while_loading_waits_for_ready_then_stops_cleanly(
    repo: Path, triton_home: TritonHome, tmp_path: Path
) -> None:
    """Signalling Triton mid-load orphans its stubs; serve defers the stop until ready."""
    run_dir = tmp_path / "run"
    process = serve_digits(repo, run_dir)

    def exited() -> str | None:
        return None if process.poll() is None else f"serve exited with {process.returncode}"

    # Triton has been started: now it loads
    until((run_dir / "triton.log").exists, 60, "serve never started Triton", 0.01, exited)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Triton ready: digits versions 1, 2" in out and "Triton stopped (exit code 0)" in out
    assert "modelcanary_" not in " ".join(p.name for p in SHM_DIR.iterdir() if "triton" in p.name)
    leftovers = subprocess.run(
        ["pgrep", "-f", f"{run_dir}/backends/python/triton_python_backend_stub"],
        capture_output=True,
        check=False,
    )
    assert leftovers.stdout == b""  # no stub outlived the server
