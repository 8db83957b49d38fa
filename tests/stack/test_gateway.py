"""The gateway in front of the real Triton: routing, split, admin API, failures, metrics."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from scipy.stats import chisquare

from modelcanary.process import free_ports
from tests.support.gateway import (
    AUTH,
    CLIENT_ERRORS,
    HEADER,
    StartGateway,
    X,
    body,
    digits_route,
    samples,
    server_errors,
    value,
)

pytestmark = pytest.mark.slow


def reference(repo: Path, version: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repo / "digits" / version / "model.onnx"))
    result: np.ndarray = session.run(None, {"pixels": x})[0]
    return result


def test_requests_reach_the_chosen_version_and_say_which(
    triton: str, start_gateway: StartGateway, digits_repo: Path
) -> None:
    url = start_gateway(digits_route(triton, {"1": 0, "2": 100}))
    response = httpx.post(f"{url}/v2/models/digits/infer", json=body(X))
    assert response.status_code == 200 and response.headers[HEADER] == "2"
    got = np.array(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 10)
    np.testing.assert_allclose(got, reference(digits_repo, "2", X), atol=1e-6)
    # pinned by header or by path: served by version 1 although it has no weight
    pinned = httpx.post(f"{url}/v2/models/digits/infer", json=body(X), headers={HEADER: "1"})
    assert pinned.headers[HEADER] == "1"
    by_path = httpx.post(f"{url}/v2/models/digits/versions/1/infer", json=body(X))
    assert by_path.headers[HEADER] == "1" and by_path.json() == pinned.json()


def test_tritonclient_binary_tensors_cross_the_gateway(
    triton: str, start_gateway: StartGateway, digits_repo: Path
) -> None:
    url = start_gateway(digits_route(triton, {"1": 100, "2": 0}))
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    tensor = httpclient.InferInput("pixels", [3, 64], "FP32")
    tensor.set_data_from_numpy(X, binary_data=True)
    output = httpclient.InferRequestedOutput("logits", binary_data=True)
    result = client.infer("digits", [tensor], outputs=[output])
    np.testing.assert_allclose(result.as_numpy("logits"), reference(digits_repo, "1", X), atol=1e-6)
    assert client.is_model_ready("digits") and client.is_server_ready()
    assert client.get_model_metadata("digits")["name"] == "digits"


def test_a_10_90_split_passes_a_chi_square_test(triton: str, start_gateway: StartGateway) -> None:
    url = start_gateway(digits_route(triton, {"1": 90, "2": 10}))
    served: Counter[str] = Counter()
    with httpx.Client() as client:
        for _ in range(2000):
            served[
                client.post(f"{url}/v2/models/digits/infer", json=body(X[:1])).headers[HEADER]
            ] += 1
    assert served["1"] + served["2"] == 2000
    assert (
        chisquare([served["1"], served["2"]], [1800, 200]).pvalue > 1e-6
    )  # an 80/20 split: ~1e-30
    assert (
        value(url, "modelcanary_gateway_requests_total", model="digits", version="2", code="200")
        == served["2"]
    )


def test_changing_weights_under_load_loses_no_request(
    triton: str, start_gateway: StartGateway
) -> None:
    url = start_gateway(digits_route(triton, {"1": 100, "2": 0}))
    done = threading.Event()
    results: list[tuple[Counter[int], Counter[str]]] = []  # one pair per worker thread

    def load() -> None:
        codes: Counter[int] = Counter()
        served: Counter[str] = Counter()
        results.append((codes, served))
        with httpx.Client() as client:
            while not done.is_set():
                response = client.post(f"{url}/v2/models/digits/infer", json=body(X[:1]))
                codes[response.status_code] += 1
                served[response.headers.get(HEADER, "?")] += 1

    def sent() -> int:
        return sum(sum(codes.values()) for codes, _ in list(results))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    splits = [{"1": 0, "2": 100}, {"1": 50, "2": 50}, {"1": 100, "2": 0}]
    flips = 0
    deadline = time.monotonic() + 120
    with httpx.Client(headers=AUTH) as admin:
        while (flips < 30 or sent() < 300) and time.monotonic() < deadline:
            reply = admin.put(
                f"{url}/admin/models/digits/weights", json={"weights": splits[flips % 3]}
            )
            assert reply.status_code == 200
            flips += 1
            time.sleep(0.005)
    done.set()
    for worker in workers:
        worker.join()
    codes = sum((c for c, _ in results), Counter())
    served = sum((s for _, s in results), Counter())
    assert flips >= 30 and sum(codes.values()) >= 300
    assert set(codes) == {200}  # every request answered, none dropped by a change
    assert set(served) == {"1", "2"}


def test_admin_api(triton: str, start_gateway: StartGateway) -> None:
    url = start_gateway(digits_route(triton))
    weights = f"{url}/admin/models/digits/weights"
    assert httpx.get(weights).status_code == 401
    assert httpx.get(weights, headers={"Authorization": "Bearer wrong"}).status_code == 401
    current = httpx.get(weights, headers=AUTH).json()
    assert current["weights"] == {"1": 100, "2": 0} and current["stable"] == "1"
    cases = [
        ({"weights": {"1": 90, "2": 20}}, "weights must sum to 100, not 110 (1=90, 2=20)"),
        (
            {"weights": {"1": 90, "7": 10}},
            "version '7' is not served by this gateway (versions: 1, 2)",
        ),
        ({"weights": {"1": 90.5, "2": 9.5}}, "whole percent"),
        ({"split": {"1": 100}}, 'the body must be JSON like {"weights"'),
        ({"split": {"1": 100}}, "weights: Field required; split: Extra inputs are not permitted"),
        # a misspelt field is refused, not dropped (this promotion would keep 1 stable)
        ({"weights": {"1": 0, "2": 100}, "stabel": "2"}, "stabel: Extra inputs are not permitted"),
        ({"weights": {"1": 100}, "stable": 2}, "stable: Input should be a valid string"),
    ]
    for document, message in cases:
        reply = httpx.put(weights, json=document, headers=AUTH)
        assert reply.status_code == 400 and message in reply.json()["error"]
    reply = httpx.put(weights, content=b"not json", headers=AUTH)
    assert reply.status_code == 400
    reply = httpx.put(weights, content=b" " * (64 * 1024 + 1), headers=AUTH)
    assert reply.status_code == 413 and "exceeds the gateway's limit" in reply.json()["error"]
    assert httpx.get(weights, headers=AUTH).json()["weights"] == {"1": 100, "2": 0}  # unchanged
    reply = httpx.put(weights, json={"weights": {"1": 75, "2": 25}}, headers=AUTH)
    assert reply.status_code == 200 and reply.json()["weights"] == {"1": 75, "2": 25}
    assert value(url, "modelcanary_gateway_weight_percent", model="digits", version="2") == 25
    assert httpx.get(f"{url}/admin/models/cats/weights", headers=AUTH).status_code == 404
    assert httpx.delete(weights, headers=AUTH).status_code == 405


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_the_admin_api_refuses_non_finite_numbers(
    triton: str, start_gateway: StartGateway, number: str
) -> None:
    """Python's json (and pydantic's) reads NaN, Infinity and -Infinity, and 1e999 as
    infinity: each is a 400 with one line, on weights and on shadow percents alike, and
    nothing changes."""
    url = start_gateway(digits_route(triton))
    bodies = {
        f"{url}/admin/models/digits/weights": f'{{"weights": {{"1": {number}, "2": 0}}}}',
        f"{url}/admin/shadow/digits": f'{{"canary": "2", "percent": {number}}}',
    }
    for where, content in bodies.items():
        reply = httpx.put(where, content=content.encode(), headers=AUTH)
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert f"{number} is not a finite number" in error and "\n" not in error, error
    weights = httpx.get(f"{url}/admin/models/digits/weights", headers=AUTH).json()["weights"]
    assert weights == {"1": 100, "2": 0}
    assert httpx.get(f"{url}/admin/shadow", headers=AUTH).json() == {"shadow": {}}


def test_a_promotion_makes_the_canary_stable(triton: str, start_gateway: StartGateway) -> None:
    """PUT with "stable" moves the stable role (metrics, retry target, fallback)."""
    url = start_gateway(digits_route(triton, {"1": 50, "2": 50}))
    weights = f"{url}/admin/models/digits/weights"
    role = "modelcanary_gateway_version_role"
    assert value(url, role, model="digits", version="1", role="stable") == 1
    reply = httpx.put(weights, json={"weights": {"9": 100}, "stable": "9"}, headers=AUTH)
    assert reply.status_code == 400 and "stable version '9' is not served" in reply.json()["error"]
    reply = httpx.put(weights, json={"weights": {"2": 100}, "stable": "2"}, headers=AUTH)
    assert reply.status_code == 200 and reply.json()["stable"] == "2"
    roles = {(lab["version"], lab["role"]) for n, lab, v in samples(url) if n == role and v == 1}
    assert roles == {("1", "canary"), ("2", "stable")}


def test_tritons_own_4xx_pass_through(triton: str, start_gateway: StartGateway) -> None:
    url = start_gateway(digits_route(triton))
    bad = {"inputs": [{"name": "pixels", "shape": [1, 63], "datatype": "FP32", "data": [0.0] * 63}]}
    response = httpx.post(f"{url}/v2/models/digits/infer", json=bad)
    assert response.status_code == 400
    assert "unexpected shape for input 'pixels' for model 'digits'" in response.json()["error"]
    assert (
        value(url, "modelcanary_gateway_requests_total", model="digits", version="1", code="400")
        == 1
    )
    assert value(url, CLIENT_ERRORS, model="digits", version="1", reason="invalid_request") == 1


def test_unknown_models_and_versions(triton: str, start_gateway: StartGateway) -> None:
    url = start_gateway(digits_route(triton))
    response = httpx.post(f"{url}/v2/models/cats/infer", json=body(X))
    assert response.status_code == 404
    assert response.json()["error"] == "unknown model 'cats'; this gateway routes: digits"
    response = httpx.post(f"{url}/v2/models/digits/infer", json=body(X), headers={HEADER: "9"})
    assert response.status_code == 404 and "has no version '9'" in response.json()["error"]


def test_oversized_bodies_get_413(triton: str, start_gateway: StartGateway) -> None:
    url = start_gateway(digits_route(triton), max_body_bytes=1000)
    response = httpx.post(f"{url}/v2/models/digits/infer", json=body(X))
    assert response.status_code == 413
    assert "exceeds the gateway's limit of 1000 bytes" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no content-length: the limit applies while reading
        for _ in range(10):
            yield b" " * 500

    response = httpx.post(f"{url}/v2/models/digits/infer", content=chunks())
    assert response.status_code == 413
    assert value(url, CLIENT_ERRORS, model="digits", version="1", reason="body_too_large") == 2
    assert server_errors(url, "1") == 0


def test_dead_and_silent_upstreams_give_502_and_504(start_gateway: StartGateway) -> None:
    (dead,) = free_ports(1)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections (the kernel does), never answers
    try:
        url = start_gateway(
            {
                "digits": {"stable": "1", "upstreams": {"1": f"http://127.0.0.1:{dead}"}},
                "slow": {
                    "stable": "1",
                    "upstreams": {"1": f"http://127.0.0.1:{silent.getsockname()[1]}"},
                },
            },
            upstream_timeout_s=0.5,
            readiness_interval_s=0,  # probes would find both unready: 503 without sending
        )
        response = httpx.post(f"{url}/v2/models/digits/infer", json=body(X))
        assert response.status_code == 502
        assert (
            f"version 1 of digits at http://127.0.0.1:{dead}/v2/models/digits/versions/1/infer refused"
            in response.json()["error"]
        )
        response = httpx.post(f"{url}/v2/models/slow/infer", json=body(X))
        assert response.status_code == 504
        assert (
            "version 1 of slow at" in response.json()["error"]
            and "did not answer within 0.5 s" in response.json()["error"]
        )
        ready = httpx.get(f"{url}/v2/health/ready")
        assert (
            ready.status_code == 503 and "digits version 1 is unreachable" in ready.json()["error"]
        )
        assert (
            value(
                url, "modelcanary_gateway_requests_total", model="digits", version="1", code="502"
            )
            == 1
        )
        assert (
            value(url, "modelcanary_gateway_requests_total", model="slow", version="1", code="504")
            == 1
        )
    finally:
        silent.close()


def test_a_refused_canary_request_is_retried_on_stable(
    triton: str, start_gateway: StartGateway
) -> None:
    (dead,) = free_ports(1)
    route = {
        "stable": "1",
        "upstreams": {"1": triton, "2": f"http://127.0.0.1:{dead}"},
        "weights": {"1": 50, "2": 50},
    }
    # no readiness probes, which would take the dead canary out of the split before any request
    url = start_gateway({"digits": route}, readiness_interval_s=0)
    retried = 0
    for _ in range(40):
        response = httpx.post(f"{url}/v2/models/digits/infer", json=body(X[:1]))
        assert response.status_code == 200 and response.headers[HEADER] == "1"
        retried += response.headers.get("x-modelcanary-retried-from") == "2"
    assert retried > 0
    # the canary's refusals still count against it
    assert (
        value(url, "modelcanary_gateway_requests_total", model="digits", version="2", code="502")
        == retried
    )
    assert (
        value(url, "modelcanary_gateway_requests_total", model="digits", version="1", code="200")
        == 40
    )


def test_health_metadata_and_metrics(triton: str, start_gateway: StartGateway) -> None:
    url = start_gateway(digits_route(triton, {"1": 50, "2": 50}))
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{url}/v2/models/digits/ready").status_code == 200
    metadata = httpx.get(f"{url}/v2/models/digits/versions/2").json()
    assert metadata["name"] == "digits" and metadata["inputs"][0]["name"] == "pixels"
    for _ in range(10):
        httpx.post(f"{url}/v2/models/digits/infer", json=body(X[:1]))
    names = {n for n, _, _ in samples(url)}
    assert {
        "modelcanary_gateway_requests_total",
        "modelcanary_gateway_request_duration_seconds_bucket",
        "modelcanary_gateway_weight_percent",
    } <= names
    buckets = [
        lab["le"]
        for n, lab, _ in samples(url)
        if n.endswith("_bucket") and lab.get("version") == "1"
    ]
    assert buckets[0] == "0.001" and "10.0" in buckets and len(buckets) >= 25
    assert value(url, "modelcanary_gateway_request_duration_seconds_count", model="digits") == 10


def test_weights_may_only_name_loaded_versions(triton: str, start_gateway: StartGateway) -> None:
    """Version 3 is configured in the gateway but Triton has not loaded it."""
    route = {"stable": "1", "upstreams": {"1": triton, "3": triton}}
    url = start_gateway({"digits": route})
    reply = httpx.put(
        f"{url}/admin/models/digits/weights", json={"weights": {"1": 90, "3": 10}}, headers=AUTH
    )
    assert reply.status_code == 400
    assert (
        "digits version 3 is not ready" in reply.json()["error"]
        and "weights unchanged" in reply.json()["error"]
    )
    assert httpx.get(f"{url}/admin/models/digits/weights", headers=AUTH).json()["weights"] == {
        "1": 100,
        "3": 0,
    }
