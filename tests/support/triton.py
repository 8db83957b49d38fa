"""A real Triton serving some versions of the example repository, for tests that need
their own set of versions (the stack tests' shared `triton` fixture serves 1 and 2)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tritonclient.grpc as grpcclient

from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer


@contextmanager
def serving_digits(
    repo: Path, home: TritonHome, run_dir: Path, versions: Sequence[int]
) -> Iterator[str]:
    """Triton serving these digits versions of REPO until the block ends; its HTTP URL."""
    with TritonServer(repo, run_dir, home) as server:
        endpoints = server.start()
        server.load("digits", list(versions))
        yield endpoints.http


# The security probe's use of Triton's control APIs (issue 25): load a python-backend model
# with a model.py of its own (its code then runs as Triton's user), pin the served versions
# (which unloaded the canary), and the other control APIs.
PWN_CONFIG = json.dumps({"backend": "python", "max_batch_size": 0})
PIN_STABLE = json.dumps({"name": "digits", "version_policy": {"specific": {"versions": [1]}}})
CONTROL_REQUESTS: list[tuple[str, str, dict[str, object] | None]] = [
    (
        "POST",
        "/v2/repository/models/pwnprobe/load",
        {"parameters": {"config": PWN_CONFIG, "file:1/model.py": "aW1wb3J0IG9z"}},
    ),
    ("POST", "/v2/repository/models/digits/load", {"parameters": {"config": PIN_STABLE}}),
    ("POST", "/v2/repository/models/digits/unload", {}),
    ("POST", "/v2/repository/index", {}),
    ("GET", "/v2/models/digits/config", None),
    ("GET", "/v2/models/digits/versions/2/config", None),
    ("GET", "/v2/systemsharedmemory/status", None),
    ("GET", "/v2/logging", None),
    ("POST", "/v2/logging", {"log_verbose_level": 1}),
    ("GET", "/v2/trace/setting", None),
]


def grpc_control_calls(client: grpcclient.InferenceServerClient) -> list[Callable[[], Any]]:
    """Triton's gRPC control RPCs, each a call a server in front of it must refuse."""
    return [
        lambda: client.load_model("digits"),
        lambda: client.unload_model("digits"),
        lambda: client.get_model_repository_index(),
        lambda: client.get_system_shared_memory_status(),
        lambda: client.get_trace_settings(),
        lambda: client.get_log_settings(),
    ]
