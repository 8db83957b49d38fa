"""Hostile inference requests through the gateway to the real Triton (issue 25): the
security probe's requests that crashed Triton (SIGSEGV, std::bad_alloc) or failed a whole
batch are answered 400 by the gateway, never reach Triton, never count against the
version, and the innocent requests sent meanwhile succeed. Triton's control APIs are not
reachable through the gateway."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer
from tests.support.gateway import (
    CLIENT_ERRORS,
    HEADER,
    StartGateway,
    X,
    body,
    digits_route,
    server_errors,
    value,
)
from tests.support.triton import CONTROL_REQUESTS

pytestmark = pytest.mark.slow
REQUESTS = "modelcanary_gateway_requests_total"


@pytest.fixture(scope="module")
def served(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton of this module's own serving digits 1 and 2: the probes, if they got
    through, would crash it."""
    with TritonServer(digits_repo, tmp_path_factory.mktemp("run"), triton_home) as server:
        server.start()
        server.load("digits", [1, 2])
        yield server


def gateway(served: TritonServer, start: StartGateway, repo: Path, **limits: object) -> str:
    """A gateway sending all traffic to the canary (2); it reads the max batch size from
    the repository."""
    assert served.endpoints is not None
    route = digits_route(served.endpoints.http, {"1": 0, "2": 100})
    return start(route, shadow={"repository": str(repo)}, **limits)


def binary_request(
    shape: list[int], data: bytes, size: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A binary-tensor body: a JSON header declaring `shape` and `size` bytes, then data."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data) if size is None else size},
                }
            ]
        }
    ).encode()
    return header + data, {"inference-header-content-length": str(len(header))}


# The probe's three requests that took Triton down or failed a batch.
DEEP = b"[" * 400_000
HUGE_JSON = json.dumps(
    {"inputs": [{"name": "pixels", "shape": [1 << 40, 64], "datatype": "FP32", "data": [0.5] * 64}]}
).encode()
HUGE_BINARY = binary_request([1 << 40, 64], bytes(256))
PROBES = {
    "400,000 [": (DEEP, {}, "invalid_json", "nests deeper than 32 levels"),
    "shape [2^40, 64] in JSON": (
        HUGE_JSON,
        {},
        "batch_too_large",
        "input 'pixels': a batch of 1099511627776 exceeds the model's max batch size of 32",
    ),
    "binary header [2^40, 64] with 256 bytes": (
        *HUGE_BINARY,
        "batch_too_large",
        "a batch of 1099511627776 exceeds the model's max batch size of 32",
    ),
}


def test_the_probes_requests_are_refused_and_triton_lives(
    served: TritonServer, start_gateway: StartGateway, digits_repo: Path
) -> None:
    """Each probe three times, pinned to the canary, while innocent requests go to it too:
    400 with one line, Triton's process unchanged, no error of the canary's, and every
    innocent request answered."""
    url = gateway(served, start_gateway, digits_repo)
    infer = f"{url}/v2/models/digits/infer"
    pid = served.pid

    def innocent(_: int) -> int:
        return httpx.post(infer, json=body(X), headers={HEADER: "2"}, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        answers = pool.map(innocent, range(60))
        for name, (content, headers, _, message) in PROBES.items():
            for _ in range(3):
                response = httpx.post(infer, content=content, headers={HEADER: "2", **headers})
                assert response.status_code == 400, (name, response.text)
                error = response.json()["error"]
                assert message in error and "\n" not in error, (name, error)
                assert response.headers[HEADER] == "2"
        assert list(answers) == [200] * 60
    assert served.exited() is None and served.pid == pid
    assert server_errors(url, "2") == 0
    for reason, count in Counter(reason for *_, reason, _ in PROBES.values()).items():
        assert value(url, CLIENT_ERRORS, model="digits", version="2", reason=reason) == 3 * count
    # none was forwarded: the canary answered only the innocent requests
    assert value(url, REQUESTS, model="digits", version="2") == 60


def test_without_a_known_batch_size_the_sizes_still_refuse_the_probes(
    served: TritonServer, start_gateway: StartGateway
) -> None:
    """A gateway that cannot read the model's max batch size (no repository): the shapes
    still have to fit the bytes sent."""
    assert served.endpoints is not None
    url = start_gateway(digits_route(served.endpoints.http, {"1": 0, "2": 100}))
    infer = f"{url}/v2/models/digits/infer"
    response = httpx.post(infer, content=HUGE_JSON)
    assert response.status_code == 400
    assert response.json()["error"].startswith(
        "the JSON inputs' shapes hold 70368744177664 elements; "
    )
    content, headers = HUGE_BINARY
    response = httpx.post(infer, content=content, headers=headers)
    assert response.status_code == 400
    assert (
        "shape [1099511627776, 64] of FP32 takes 281474976710656 bytes; binary_data_size says 256"
        in response.json()["error"]
    )
    assert value(url, CLIENT_ERRORS, model="digits", version="2", reason="invalid_tensors") == 2
    assert served.exited() is None
    assert httpx.post(infer, json=body(X)).status_code == 200


def test_batches_above_the_models_limit_never_reach_it(
    served: TritonServer, start_gateway: StartGateway, digits_repo: Path
) -> None:
    url = gateway(served, start_gateway, digits_repo)
    infer = f"{url}/v2/models/digits/infer"
    rows = [[0.5] * 64] * 33
    response = httpx.post(
        infer,
        json={"inputs": [{"name": "pixels", "shape": [33, 64], "datatype": "FP32", "data": rows}]},
    )
    assert response.status_code == 400
    content, headers = binary_request([64, 64], bytes(64 * 64 * 4))
    response = httpx.post(infer, content=content, headers=headers)
    assert response.status_code == 400
    assert value(url, CLIENT_ERRORS, model="digits", version="2", reason="batch_too_large") == 2
    assert value(url, REQUESTS, model="digits", version="2") == 0
    full = httpx.post(infer, json=body(X.repeat(11, axis=0)[:32]))
    assert full.status_code == 200, full.text


@pytest.mark.parametrize(
    ("content", "headers", "message"),
    [
        (*binary_request([1, 64], bytes(256), 200), "binary_data_size says 200"),
        (
            binary_request([1, 64], bytes(256))[0] + bytes(8),
            binary_request([1, 64], bytes(256))[1],
            "binary_data_size add up to 256 bytes; the body has 264 after the JSON header",
        ),
        (
            b'{"inputs": []}' + bytes(4),
            {"inference-header-content-length": "\xb2".encode("latin-1")},
            "Inference-Header-Content-Length '²' is not a size",
        ),
        (
            b'{"inputs": []}',
            {"inference-header-content-length": "99"},
            "Inference-Header-Content-Length '99' is not a size within the 14-byte body",
        ),
        (
            b'{"inputs": [{"name": "pixels", "shape": [1, 64], "shape": [2, 64], "datatype": '
            b'"FP32", "data": []}]}',
            {},
            "key 'shape' appears twice in one object",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32"}]}
            ).encode(),
            {},
            "input 'pixels' has no data (nor a binary_data_size)",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "pixels", "shape": [1, -64], "datatype": "FP32", "data": []}]}
            ).encode(),
            {},
            "input 'pixels': shape must be a list of at most 16 non-negative integers",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP33", "data": []}]}
            ).encode(),
            {},
            "input 'pixels': datatype 'FP33' is not one of",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "pixels",
                            "shape": [1, 64],
                            "datatype": "FP32",
                            "parameters": {"shared_memory_region": "r"},
                        }
                    ]
                }
            ).encode(),
            {},
            "shared memory is not offered by the gateway",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "pixels",
                            "shape": [1, 64],
                            "datatype": "FP32",
                            "data": [],
                            "parameters": {"deep": {"x": 1}},
                        }
                    ]
                }
            ).encode(),
            {},
            "the parameters of input 'pixels' must be an object of strings, numbers, booleans",
        ),
        (json.dumps({"inputs": 5}).encode(), {}, "'inputs' must be a non-empty list of tensors"),
        (b'{"inputs": [' + b"[" * 40 + b"]" * 40 + b"]}", {}, "nests deeper than 32 levels"),
    ],
)
def test_headers_that_do_not_add_up_are_refused(
    served: TritonServer,
    start_gateway: StartGateway,
    digits_repo: Path,
    content: bytes,
    headers: dict[str, str | bytes],
    message: str,
) -> None:
    url = gateway(served, start_gateway, digits_repo)
    response = httpx.post(f"{url}/v2/models/digits/infer", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"], response.text
    assert value(url, REQUESTS, model="digits", version="2") == 0


def test_compressed_bodies_are_checked_within_the_limit(
    served: TritonServer, start_gateway: StartGateway, digits_repo: Path
) -> None:
    """A gzip body is checked like a plain one, decompressed no further than the body
    limit: a small bomb is refused 413; a valid one is answered."""
    url = gateway(served, start_gateway, digits_repo, max_body_bytes=64 * 1024)
    infer = f"{url}/v2/models/digits/infer"
    gz = {"content-encoding": "gzip"}
    bomb = gzip.compress(b" " * (10 * 1024 * 1024))
    response = httpx.post(infer, content=bomb, headers=gz)
    assert response.status_code == 413, response.text
    assert "decompresses to more than the gateway's limit of 65536 bytes" in response.text
    response = httpx.post(infer, content=gzip.compress(DEEP[:50_000]), headers=gz)
    assert response.status_code == 400 and "nests deeper" in response.text
    response = httpx.post(infer, content=gzip.compress(HUGE_JSON), headers=gz)
    assert response.status_code == 400 and "batch of 1099511627776" in response.text
    response = httpx.post(infer, content=gzip.compress(json.dumps(body(X)).encode()), headers=gz)
    assert response.status_code == 200, response.text
    assert value(url, REQUESTS, model="digits", version="2") == 1


def test_tritons_control_apis_are_not_reachable_through_the_gateway(
    served: TritonServer, start_gateway: StartGateway, digits_repo: Path
) -> None:
    """The probe's loads (a python-backend model; pinning the versions, which unloaded the
    canary) and the other control APIs: 404 from the gateway, nothing changed on Triton.
    A model's config is the gateway's own public part of it, never Triton's."""
    url = gateway(served, start_gateway, digits_repo)
    for method, path, document in CONTROL_REQUESTS:
        response = httpx.request(method, url + path, json=document, headers={HEADER: "2"})
        if method == "GET" and path.endswith("/config"):
            public = {"name", "platform", "backend", "max_batch_size", "input", "output"}
            assert response.status_code == 200 and set(response.json()) == public, path
            continue
        assert response.status_code == 404, (path, response.text)
    assert served.endpoints is not None
    for version in (1, 2):
        ready = httpx.get(f"{served.endpoints.http}/v2/models/digits/versions/{version}/ready")
        assert ready.status_code == 200
    assert httpx.get(f"{served.endpoints.http}/v2/models/pwnprobe/ready").status_code != 200
    assert httpx.get(f"{url}/v2/models/digits/versions/2").status_code == 200
