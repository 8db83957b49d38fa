"""A Python-based Triton backend named `onnxruntime`, for CPU machines without Triton's
native ONNX Runtime backend.

Installed as `<backends>/onnxruntime/model.py` next to `<backends>/python/`, it serves
every model whose config says `backend: "onnxruntime"`, so the repository written by
`modelcanary export` is served unchanged here and by the native backend in a cluster.

It runs inside the Triton python backend stub, in the stub's own environment: it may
import only numpy, onnxruntime and triton_python_backend_utils, never modelcanary.

- At load: the config's inputs and outputs are checked against the ONNX graph, and one
  run on zeros warms the session up.
- Batching: the requests of one `execute` call (the dynamic batcher's batch) run as one
  onnxruntime call per group of equal per-sample shapes, then split per request.
- Config parameters: `intra_op_thread_count` (default 1, without spinning: Triton runs
  several instances on few cores, and spinning thread pools starve each other; measured
  on 2 cores, 1 thread doubles the throughput of the digits MLP), `inter_op_thread_count`,
  and `MODELCANARY_FAULTS` (a directory; see fault injection below).
- Errors become Triton errors, never a crash. When every request of a call fails, the
  call raises, because only then does Triton count them as failures
  (`nv_inference_request_failure{reason="BACKEND"}`): the python backend of Triton 2.51
  counts an error response as a success.
- Client mistakes are not the version's failures: when ONNX Runtime rejects the inputs
  (an invalid argument, such as a token id beyond the vocabulary, or shapes that do not
  broadcast, such as ids and a mask of different lengths), the request is answered with
  Triton's invalid-argument error (HTTP 400), one line naming the inputs, and the other
  requests of its batch run again without it. The golden samples and the holdout gate run
  every version on valid inputs before it gets traffic, so a version that rejects valid
  inputs is stopped there.
- Metrics: histogram `modelcanary_backend_request_duration_seconds{model,version}`.
- Fault injection, off unless the model was loaded with `MODELCANARY_FAULTS`: the file
  `<dir>/<model>/<version>.json` with `{"error_ratio": 0.3, "latency_ms": 200}` makes that
  version answer `latency_ms` later and fail each call (one dynamic batch) with
  probability `error_ratio`, so that share of its requests fails on average. The file is
  re-read when it changes, and every change is logged.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Seconds; fine enough for a meaningful P99 from 1 ms to 10 s. Same as the gateway's.
# a table of bucket bounds, read across
# fmt: off
LATENCY_BUCKETS = [
    0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04,
    0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0,
    7.5, 10.0,
]
# fmt: on

ORT_TO_TRITON = {
    "tensor(float16)": "TYPE_FP16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(bool)": "TYPE_BOOL",
}


TRITON_TO_NUMPY: dict[str, Any] = {
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_UINT8": np.uint8,
    "TYPE_BOOL": np.bool_,
}


class FaultFile:
    """The fault injection settings of one model version, re-read when the file changes."""

    def __init__(self, directory: str | None, model: str, version: str) -> None:
        self.path = Path(directory, model, f"{version}.json") if directory else None
        self.label = f"{model}:{version}"
        self.stamp: tuple[float, int] | None = None
        self.error_ratio = 0.0
        self.latency_s = 0.0

    def refresh(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
            stamp: tuple[float, int] | None = (stat.st_mtime, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self.stamp:
            return
        self.stamp = stamp
        error_ratio, latency_s = 0.0, 0.0
        if stamp is not None:
            try:
                spec = json.loads(self.path.read_text())
                error_ratio = float(spec.get("error_ratio", 0.0))
                latency_s = float(spec.get("latency_ms", 0.0)) / 1000.0
                if not 0.0 <= error_ratio <= 1.0 or latency_s < 0:
                    raise ValueError("error_ratio must be in [0, 1] and latency_ms >= 0")
            except (OSError, ValueError) as exc:
                pb_utils.Logger.log_error(f"fault file {self.path} ignored: {exc}")
                error_ratio, latency_s = 0.0, 0.0
        if (error_ratio, latency_s) != (self.error_ratio, self.latency_s):
            self.error_ratio, self.latency_s = error_ratio, latency_s
            if error_ratio or latency_s:
                pb_utils.Logger.log_warn(
                    f"FAULT INJECTION ON for {self.label}: failing {error_ratio:.0%} of "
                    f"requests, adding {latency_s * 1000:.0f} ms"
                )
            else:
                pb_utils.Logger.log_warn(f"fault injection off for {self.label}")


class TritonPythonModel:
    """One instance of one version of one model."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model = args["model_name"]
        self.version = args["model_version"]
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        filename = config.get("default_model_filename") or "model.onnx"
        path = str(Path(args["model_repository"], self.version, filename))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "1") or 1)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", "0") or 0)
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [t["name"] for t in config.get("input", [])]
        self.outputs = [t["name"] for t in config.get("output", [])]
        check_signature(config, self.session, self.batched, f"{self.model}:{self.version}")
        self._warm_up(config)
        self.faults = FaultFile(params.get("MODELCANARY_FAULTS") or None, self.model, self.version)
        self.faults.refresh()
        self.rng = random.Random()
        self.family = pb_utils.MetricFamily(
            name="modelcanary_backend_request_duration_seconds",
            description="Time from the start of a batch to the response, per request",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.latency = self.family.Metric(
            labels={"model": self.model, "version": self.version}, buckets=LATENCY_BUCKETS
        )

    def _warm_up(self, config: dict[str, Any]) -> None:
        """One run on zeros at load, so that no user request pays onnxruntime's first-run
        cost (hundreds of milliseconds, which shows as a P99 spike on a fresh canary)."""
        feed = {}
        for tensor in config.get("input", []):
            dims = [int(d) for d in tensor.get("dims", [])]
            if "reshape" in tensor:
                dims = [int(d) for d in tensor["reshape"].get("shape", [])]
            shape = ([1] if self.batched else []) + [d if d > 0 else 1 for d in dims]
            dtype = TRITON_TO_NUMPY.get(tensor.get("data_type", ""), np.float32)
            feed[tensor["name"]] = np.zeros(shape, dtype=dtype)
        try:
            self.session.run(self.outputs, feed)
        except Exception as exc:  # a model may reject zeros; then the first request warms it
            pb_utils.Logger.log_warn(f"{self.model}:{self.version}: warm-up run failed: {exc}")

    def execute(self, requests: list[Any]) -> list[Any]:
        started = time.perf_counter()
        self.faults.refresh()
        if self.faults.latency_s:
            time.sleep(self.faults.latency_s)
        if self.faults.error_ratio and self.rng.random() < self.faults.error_ratio:
            self._observe(started, len(requests))
            raise pb_utils.TritonModelException(
                f"injected fault: {self.model}:{self.version} fails "
                f"{self.faults.error_ratio:.0%} of requests"
            )
        responses: list[Any] = [None] * len(requests)
        failures: list[str] = []
        groups: dict[tuple[Any, ...], list[int]] = {}
        feeds: list[dict[str, np.ndarray]] = []
        for index, request in enumerate(requests):
            try:
                feed = {name: self._input(request, name) for name in self.inputs}
            except ValueError as exc:
                responses[index] = error_response(str(exc))
                failures.append(str(exc))
                feeds.append({})
                continue
            feeds.append(feed)
            key = tuple(a.shape[1:] if self.batched else a.shape for a in feed.values())
            groups.setdefault(key if self.batched else (index,), []).append(index)
        for members in groups.values():
            failures.extend(self._run_group(members, feeds, responses))
        self._observe(started, len(requests))
        if failures and len(failures) == len(requests):
            raise pb_utils.TritonModelException(failures[0])
        return responses

    def _observe(self, started: float, count: int) -> None:
        elapsed = time.perf_counter() - started
        for _ in range(count):
            self.latency.observe(elapsed)

    def _input(self, request: Any, name: str) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise ValueError(f"input {name!r} is missing")
        array: np.ndarray = tensor.as_numpy()
        return array

    def _run_group(
        self, members: list[int], feeds: list[dict[str, np.ndarray]], responses: list[Any]
    ) -> list[str]:
        """Run one group as one onnxruntime call; return the error messages of the version's
        own failures. A request the runtime rejects (an invalid argument) is answered as
        the client's error, and the others of its group run again without it."""
        if self.batched and len(members) > 1:
            feed = {n: np.concatenate([feeds[i][n] for i in members]) for n in self.inputs}
        else:
            feed = feeds[members[0]]
        try:
            results = self.session.run(self.outputs, feed)
        except Exception as exc:  # onnxruntime raises its own exception types
            fault = client_fault(str(exc))
            if fault is not None and len(members) > 1:
                return [m for i in members for m in self._run_group([i], feeds, responses)]
            if fault is not None:
                responses[members[0]] = error_response(
                    f"invalid input for {self.model}:{self.version} "
                    f"({describe_feed(feed)}): {fault}",
                    invalid_argument=True,
                )
                return []
            message = f"onnxruntime failed on {self.model}:{self.version}: {exc}"
            for index in members:
                responses[index] = error_response(message)
            return [message] * len(members)
        if not (self.batched and len(members) > 1):
            responses[members[0]] = pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(n, r) for n, r in zip(self.outputs, results, strict=True)
                ]
            )
            return []
        offset = 0
        for index in members:
            size = next(iter(feeds[index].values())).shape[0]
            tensors = [
                pb_utils.Tensor(n, np.ascontiguousarray(r[offset : offset + size]))
                for n, r in zip(self.outputs, results, strict=True)
            ]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            offset += size
        return []

    def finalize(self) -> None:
        self.session = None


def error_response(message: str, invalid_argument: bool = False) -> Any:
    """A failed response; Triton answers an invalid argument with 400 (gRPC
    INVALID_ARGUMENT) and counts it apart from the version's own failures."""
    if invalid_argument:
        error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    else:
        error = pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


_RUNTIME_STATUS = re.compile(r"\[ONNXRuntimeError\] : \d+ : (\w+) : ")
_RUNNING_NODE = re.compile(r"running (\w+) node")
_SOURCE_PATH = re.compile(r"\S*/\S+:\d+\s*")
_BROADCAST = "Attempting to broadcast"


def client_fault(text: str) -> str | None:
    """The runtime's reason, on one line and without source paths, when its failure
    blames the inputs (an invalid argument such as an index out of range, or shapes that
    do not broadcast); None when the failure is the version's own."""
    status = _RUNTIME_STATUS.search(text)
    detail = text.split("Status Message: ", 1)[-1]
    if _BROADCAST in detail:
        detail = detail[detail.index(_BROADCAST) :]
    elif status is None or status.group(1) != "INVALID_ARGUMENT":
        return None
    detail = _SOURCE_PATH.sub("", detail).strip().splitlines()[0] if detail.strip() else ""
    node = _RUNNING_NODE.search(text)
    return f"{node.group(1)}: {detail}" if node else detail


def describe_feed(feed: dict[str, np.ndarray]) -> str:
    """`input_ids int64 (1, 8), attention_mask int64 (1, 6)`: the inputs a request sent."""
    return ", ".join(f"{name} {array.dtype} {tuple(array.shape)}" for name, array in feed.items())


def check_signature(config: dict[str, Any], session: Any, batched: bool, label: str) -> None:
    """Fail the load, naming the tensor, when the config does not describe the graph."""
    for kind, declared, actual in (
        ("input", config.get("input", []), session.get_inputs()),
        ("output", config.get("output", []), session.get_outputs()),
    ):
        graph = {node.name: node for node in actual}
        names = [t["name"] for t in declared]
        if sorted(names) != sorted(graph):
            raise ValueError(
                f"{label}: config {kind}s {sorted(names)} differ from the ONNX graph's "
                f"{sorted(graph)}"
            )
        for tensor in declared:
            node = graph[tensor["name"]]
            want_type = tensor.get("data_type", "TYPE_INVALID")
            got_type = ORT_TO_TRITON.get(node.type, node.type)
            if want_type != got_type:
                raise ValueError(
                    f"{label}: {kind} {tensor['name']!r} is {want_type} in the config, "
                    f"{got_type} in the ONNX graph"
                )
            dims = [int(d) for d in tensor.get("dims", [])]
            if "reshape" in tensor:
                dims = [int(d) for d in tensor["reshape"].get("shape", [])]
            shape = [d if isinstance(d, int) else -1 for d in node.shape]
            if batched:
                if not shape or shape[0] != -1:
                    raise ValueError(
                        f"{label}: {kind} {tensor['name']!r} has no dynamic batch axis in the "
                        f"ONNX graph (shape {shape}) but max_batch_size > 0"
                    )
                shape = shape[1:]
            if len(shape) != len(dims) or any(
                d != -1 and s != -1 and d != s for d, s in zip(dims, shape, strict=True)
            ):
                raise ValueError(
                    f"{label}: {kind} {tensor['name']!r} has dims {dims} in the config, "
                    f"{shape} in the ONNX graph"
                )
