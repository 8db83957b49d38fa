"""`modelcanary guard` in front of the real Triton (issue 25, in a cluster): the chart runs
it in each predictor pod as the only way in to Triton's HTTP. The probe's requests that
crashed Triton or failed a batch are answered 400 and never reach it (its process lives),
a good request is answered by Triton, Triton's control APIs are 404, and health, metadata
and readiness pass through."""

# ruff: noqa: F811 (the fixtures imported from the hostile-request tests are parameters)

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelcanary.asgi_server import AppServer
from modelcanary.gateway.guard import RequestGuard
from modelcanary.serving.triton_server import TritonServer
from tests.stack.test_gateway import X, body
from tests.stack.test_gateway_hostile_requests import (
    DEEP,
    HUGE_JSON,
    PROBES,
    binary_request,
    served,  # noqa: F401
)
from tests.support.triton import CONTROL_REQUESTS
from tests.support.waits import until

pytestmark = pytest.mark.slow
PUBLIC_CONFIG = {"name", "platform", "backend", "max_batch_size", "input", "output"}


@pytest.fixture(scope="module")
def guard(served: TritonServer, digits_repo: Path) -> Iterator[str]:
    """The guard in front of the module's Triton, reading digits' max batch size from the
    repository, with a 1 MiB body limit."""
    assert served.endpoints is not None
    app = RequestGuard(
        served.endpoints.http, ["digits"], digits_repo, max_body_bytes=1 << 20, timeout_s=30
    )
    server = AppServer(app, name="guard")
    yield server.start()
    server.stop()


def test_the_probes_requests_are_refused_and_triton_lives(served: TritonServer, guard: str) -> None:
    pid = served.pid
    for path in ("/v2/models/digits/infer", "/v2/models/digits/versions/2/infer"):
        for name, (content, headers, _, message) in PROBES.items():
            response = httpx.post(guard + path, content=content, headers=headers, timeout=30)
            assert response.status_code == 400, (name, response.text)
            error = response.json()["error"]
            assert message in error and "\n" not in error, (name, error)
    response = httpx.post(
        f"{guard}/v2/models/digits/infer",
        content=gzip.compress(DEEP[:50_000]),
        headers={"content-encoding": "gzip"},
    )
    assert response.status_code == 400 and "nests deeper" in response.text
    bomb = gzip.compress(b" " * (10 * 1024 * 1024))
    response = httpx.post(
        f"{guard}/v2/models/digits/infer", content=bomb, headers={"content-encoding": "gzip"}
    )
    assert response.status_code == 413 and "1048576 bytes" in response.text
    assert served.exited() is None and served.pid == pid
    good = httpx.post(f"{guard}/v2/models/digits/versions/2/infer", json=body(X), timeout=30)
    assert good.status_code == 200, good.text
    assert good.json()["outputs"][0]["shape"] == [3, 10]


def test_binary_requests_that_add_up_pass_and_others_do_not(guard: str) -> None:
    infer = f"{guard}/v2/models/digits/infer"
    content, headers = binary_request([1, 64], X[:1].tobytes())
    response = httpx.post(infer, content=content, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    content, headers = binary_request([1, 64], bytes(256), 200)
    response = httpx.post(infer, content=content, headers=headers)
    assert response.status_code == 400 and "binary_data_size says 200" in response.text


def test_tritons_control_apis_are_404_and_nothing_changed(served: TritonServer, guard: str) -> None:
    for method, path, document in CONTROL_REQUESTS:
        response = httpx.request(method, guard + path, json=document)
        if method == "GET" and path.endswith("/config"):  # the public part, from the repo
            assert response.status_code == 200 and set(response.json()) == PUBLIC_CONFIG
            continue
        assert response.status_code == 404, (path, response.text)
        assert "\n" not in response.json()["error"]
    assert served.endpoints is not None
    for version in (1, 2):
        ready = httpx.get(f"{served.endpoints.http}/v2/models/digits/versions/{version}/ready")
        assert ready.status_code == 200
    assert httpx.get(f"{served.endpoints.http}/v2/models/pwnprobe/ready").status_code != 200


def test_health_metadata_and_statistics_pass_through(guard: str) -> None:
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/digits/ready",
        "/v2/models/digits/versions/2/ready",
    ):
        assert httpx.get(guard + path).status_code == 200, path
    metadata = httpx.get(f"{guard}/v2/models/digits/versions/1").json()
    assert metadata["name"] == "digits" and metadata["inputs"][0]["name"] == "pixels"
    assert httpx.get(f"{guard}/v2").json()["name"] == "triton"
    stats = httpx.get(f"{guard}/v2/models/digits/stats")
    assert stats.status_code == 200 and "model_stats" in stats.json()
    for method, path in [
        ("GET", "/v2/models/other"),
        ("POST", "/v2/models/other/infer"),
        ("GET", "/v2/models/digits/versions/x/ready"),
        ("PUT", "/v2/models/digits/infer"),
        ("GET", "/metrics"),
    ]:
        response = httpx.request(method, guard + path, content=b"{}")
        assert response.status_code == 404, (method, path, response.text)


def test_triton_blaming_the_request_is_400(guard: str) -> None:
    """Triton answers 500 to an OIP field it cannot parse; the guard says 400."""
    document = {
        "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": ["a"] * 64}]
    }
    response = httpx.post(f"{guard}/v2/models/digits/infer", json=document)
    assert response.status_code == 400, response.text


def test_without_a_repository_the_max_batch_size_comes_from_triton(
    served: TritonServer,
) -> None:
    """As in the chart (the operator's image has no tritonclient to read config.pbtxt):
    the guard asks Triton the loaded model's config with the control key, once."""
    assert served.endpoints is not None
    app = RequestGuard(served.endpoints.http, ["digits"], None, 1 << 20, 30, served.control_key)
    server = AppServer(app, name="guard")
    url = server.start()
    try:
        for content in (HUGE_JSON, json.dumps(body(X.repeat(11, axis=0)[:33])).encode()):
            response = httpx.post(f"{url}/v2/models/digits/infer", content=content)
            assert response.status_code == 400
            assert "exceeds the model's max batch size of 32" in response.text
        good = httpx.post(f"{url}/v2/models/digits/infer", json=body(X), timeout=30)
        assert good.status_code == 200, good.text
        assert httpx.get(f"{url}/v2/models/digits/config").status_code == 404  # no repository
    finally:
        server.stop()


@pytest.mark.parametrize("key", [None, "not-the-key"])
def test_without_a_key_nor_a_repository_the_sizes_still_refuse_the_probes(
    served: TritonServer, key: str | None
) -> None:
    """Triton refuses a wrong key (403): the guard goes on without the batch size."""
    assert served.endpoints is not None
    app = RequestGuard(served.endpoints.http, ["digits"], None, 1 << 20, 30, key)
    server = AppServer(app, name="guard")
    url = server.start()
    try:
        for name, (content, headers, _, _) in PROBES.items():
            response = httpx.post(f"{url}/v2/models/digits/infer", content=content, headers=headers)
            assert response.status_code == 400, name
        assert served.exited() is None
        good = httpx.post(f"{url}/v2/models/digits/infer", json=body(X), timeout=30)
        assert good.status_code == 200, good.text
        assert app.limits["digits"].max_batch_size is None
    finally:
        server.stop()


def test_an_unreachable_triton_is_502(digits_repo: Path) -> None:
    app = RequestGuard("http://127.0.0.1:9", ["digits"], digits_repo, 1 << 20, 5)
    server = AppServer(app, name="guard")
    url = server.start()
    try:
        response = httpx.post(f"{url}/v2/models/digits/infer", json=body(X))
        assert response.status_code == 502 and "refused" in response.json()["error"]
        assert httpx.get(f"{url}/v2/health/ready").status_code == 502
    finally:
        server.stop()


BLOCK_TRITONCLIENT = (
    "import sys; sys.modules['tritonclient'] = None; sys.argv[0] = 'modelcanary'; "
    "from modelcanary.cli import main; sys.exit(main())"
)


def test_the_command_serves_what_the_chart_runs(served: TritonServer) -> None:
    """`modelcanary guard` with the chart's flags, as a process without tritonclient."""
    assert served.endpoints is not None
    command = [
        sys.executable,
        "-m",
        "modelcanary",
        "guard",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        served.endpoints.http,
        "--model",
        "digits",
        "--control-key-env",
        "TRITON_KEY",
        "--max-body-bytes",
        "1048576",
    ]
    # as in the operator's image, which has no tritonclient
    command[1:3] = ["-c", BLOCK_TRITONCLIENT]
    env = {**os.environ, "TRITON_KEY": served.control_key}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("guard listening on http://127.0.0.1:"), first
        url = first.split()[-1]
        until(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 10, "ready")
        response = httpx.post(f"{url}/v2/models/digits/infer", content=HUGE_JSON)
        assert response.status_code == 400 and "max batch size of 32" in response.text
        assert httpx.post(f"{url}/v2/repository/index", json={}).status_code == 404
        good = httpx.post(f"{url}/v2/models/digits/infer", json=body(X), timeout=30)
        assert good.status_code == 200, good.text
    finally:
        process.terminate()
        assert process.wait(10) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--upstream"),
        (["--upstream", "ftp://x", "--model", "d"], "--upstream 'ftp://x' is not an http:// URL"),
        (["--upstream", "http://127.0.0.1:1"], "--model"),
        (["--upstream", "http://127.0.0.1:1", "--model", "d", "--listen", "x"], "--listen"),
        (
            [
                "--upstream",
                "http://127.0.0.1:1",
                "--model",
                "d",
                "--control-key-env",
                "NO_SUCH_VAR",
            ],
            "--control-key-env NO_SUCH_VAR: the environment has no such variable",
        ),
    ],
)
def test_wrong_flags_are_one_line(flags: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelcanary", "guard", *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_json_sent_is_what_triton_gets(guard: str) -> None:
    """The body is forwarded as sent, byte for byte (the checks parse, never rewrite)."""
    content = json.dumps(body(X[:2]), indent=1).encode()
    response = httpx.post(f"{guard}/v2/models/digits/infer", content=content, timeout=30)
    assert response.status_code == 200
    assert response.json()["outputs"][0]["shape"][0] == 2
