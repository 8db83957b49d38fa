"""The shadow comparator inside the gateway, in front of the real Triton: mirrored
requests compared with the canary's answers, drops under a full queue, payloads it cannot
compare counted, and none of it seen by the users or counted as their traffic."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from modelcanary.modelrepo.holdout_store import read_holdout
from modelcanary.serving.triton_home import TritonHome
from tests.conftest import metric_samples, metric_value
from tests.support.triton import serving_digits
from tests.support.waits import until

pytestmark = pytest.mark.slow
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS, BATCH = 60, 4  # 240 held-out digits per comparison


@pytest.fixture(scope="module")
def triton_shadow(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Triton serving digits 2 (stable), 3 (alike) and 4 (labels shifted by one)."""
    with serving_digits(digits_repo, triton_home, tmp_path_factory.mktemp("run"), [2, 3, 4]) as url:
        yield url


@pytest.fixture
def start_gateway(digits_repo: Path) -> Iterator[Callable[..., GatewayServer]]:
    """Start a gateway with a comparator reading the example repository."""
    servers: list[GatewayServer] = []

    def start(upstreams: dict[str, str], **shadow: object) -> GatewayServer:
        route = {"stable": "2", "upstreams": upstreams, "weights": {"2": 100}}
        config = parse_config(
            {"models": {"digits": route}, "shadow": {"repository": str(digits_repo), **shadow}},
            "test",
        )
        server = GatewayServer(Gateway(config, TOKEN))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def holdout(digits_repo: Path) -> np.ndarray:
    inputs, _ = read_holdout(digits_repo / "digits" / "2" / "holdout.npz")
    return inputs["pixels"].astype(np.float32)


def infer(url: str, x: np.ndarray) -> httpx.Response:
    data = {
        "name": "pixels",
        "shape": list(x.shape),
        "datatype": "FP32",
        "data": x.ravel().tolist(),
    }
    return httpx.post(f"{url}/v2/models/digits/infer", json={"inputs": [data]}, timeout=10)


def shadow(url: str, **body: object) -> httpx.Response:
    return httpx.put(f"{url}/admin/shadow/digits", json=body, headers=AUTH)


def value(url: str, name: str, **labels: str) -> float:
    return metric_value(f"{url}/metrics", name, model="digits", **labels)


def settled(url: str, canary: str, expected: float) -> bool:
    """Every mirrored request was compared or dropped."""
    done = value(url, "modelcanary_shadow_dropped", version=canary)
    done += value(url, "modelcanary_shadow_pairs", version=canary) / BATCH
    return done >= expected


def mirror(url: str, canary: str, x: np.ndarray) -> float:
    """Send the holdout through the gateway with every request mirrored to `canary`;
    the share of agreeing pairs."""
    assert shadow(url, canary=canary, percent=100).status_code == 200
    for start in range(0, REQUESTS * BATCH, BATCH):
        response = infer(url, x[start : start + BATCH])
        assert response.status_code == 200
        assert response.headers["x-modelcanary-version"] == "2"
    until(lambda: settled(url, canary, REQUESTS), 30, "the mirrored requests not all settled")
    pairs = value(url, "modelcanary_shadow_pairs", version=canary, output="logits")
    assert pairs == REQUESTS * BATCH
    return value(url, "modelcanary_shadow_agreeing_pairs", version=canary) / pairs


def test_label_bug_disagrees_and_a_sibling_agrees(
    triton_shadow: str, start_gateway: Callable[..., GatewayServer], holdout: np.ndarray
) -> None:
    url = start_gateway(
        {v: triton_shadow for v in ("2", "3", "4")}, drift_every=100, drift_window=200
    ).url
    assert mirror(url, "4", holdout) < 0.05  # labels shifted by one: about 0%
    assert mirror(url, "3", holdout) > 0.9  # retrained from another seed: about 98.6%
    view = httpx.get(f"{url}/admin/shadow", headers=AUTH).json()["shadow"]["digits"]
    assert view == {
        "model": "digits",
        "stable": "2",
        "canary": "3",
        "percent": 100.0,
        "kinds": {"logits": "classification"},
        "atol": 1e-3,
        "rtol": 1e-2,
        "drift": True,
    }  # numeric tolerance unset: ten times the export's 1e-4 and 1e-3
    assert value(url, "modelcanary_shadow_dropped") == 0
    # mirrored requests are no user traffic: the canaries answered none through the gateway
    assert value(url, "modelcanary_gateway_requests", version="3") == 0
    assert value(url, "modelcanary_gateway_requests", version="4") == 0
    assert value(url, "modelcanary_gateway_requests", version="2") == 2 * REQUESTS
    # held-out digits against version 2's profile (the same digits): scored, not drifted
    drift = [
        (labels["feature"], psi)
        for name, labels, psi in metric_samples(f"{url}/metrics")
        if name == "modelcanary_shadow_input_drift_psi" and labels["version"] == "3"
    ]
    assert 0 < len(drift) <= 3 and all(psi < 0.25 for _, psi in drift)
    assert value(url, "modelcanary_shadow_input_drift_samples", version="3") >= 100
    confidence = value(url, "modelcanary_shadow_confidence", version="3", side="canary")
    assert 0.5 * REQUESTS * BATCH < confidence <= REQUESTS * BATCH
    # ending the comparison stops the mirroring and its drift gauges
    assert httpx.delete(f"{url}/admin/shadow/digits", headers=AUTH).json()["removed"] is True
    assert infer(url, holdout[:BATCH]).status_code == 200
    assert value(url, "modelcanary_shadow_input_drift_samples", version="3") == 0


def test_a_full_queue_drops_and_never_fails_users(
    triton_shadow: str, start_gateway: Callable[..., GatewayServer], holdout: np.ndarray
) -> None:
    silent = socket.socket()  # a canary that accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        canary = f"http://127.0.0.1:{silent.getsockname()[1]}"
        # the worker waits 5 s on the silent canary: longer than the 20 requests take, even
        # on a loaded machine, so the queue is full for all but the first two
        url = start_gateway({"2": triton_shadow, "4": canary}, queue=1, workers=1, timeout_s=5).url
        assert shadow(url, canary="4", percent=100).status_code == 200
        for start in range(0, 20 * BATCH, BATCH):
            assert infer(url, holdout[start : start + BATCH]).status_code == 200
        # one request waits on the silent canary, one in the queue; the rest were dropped
        assert value(url, "modelcanary_shadow_dropped", reason="queue_full") == 18
        until(lambda: value(url, "modelcanary_shadow_dropped") == 20, 20, "not 20 dropped")
        assert value(url, "modelcanary_shadow_dropped", reason="canary_failed") == 2
        assert value(url, "modelcanary_gateway_requests", version="2", code="200") == 20
    finally:
        silent.close()


def test_payloads_it_cannot_compare_are_counted_and_dropped(
    triton_shadow: str, start_gateway: Callable[..., GatewayServer], holdout: np.ndarray
) -> None:
    server = start_gateway({v: triton_shadow for v in ("2", "4")})
    url = server.url
    assert shadow(url, canary="4", percent=100).status_code == 200
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    for _ in range(3):  # binary tensors: served to the user, not compared
        tensor = httpclient.InferInput("pixels", [BATCH, 64], "FP32")
        tensor.set_data_from_numpy(holdout[:BATCH], binary_data=True)
        output = httpclient.InferRequestedOutput("logits", binary_data=True)
        assert client.infer("digits", [tensor], outputs=[output]).as_numpy("logits") is not None
    until(lambda: value(url, "modelcanary_shadow_dropped") == 3, 10, "not 3 dropped")
    assert value(url, "modelcanary_shadow_dropped", reason="unparseable") == 3
    assert infer(url, holdout[:BATCH]).status_code == 200  # the comparator still compares
    until(lambda: value(url, "modelcanary_shadow_pairs") == BATCH, 10, "no batch compared")
    server.restart()  # as the supervisor does: a new event loop, the same gateway
    assert infer(url, holdout[:BATCH]).status_code == 200
    until(
        lambda: value(url, "modelcanary_shadow_pairs") == 2 * BATCH,
        10,
        "no batch compared after the restart",
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"canary": "9", "percent": 10}, 400, "canary version '9' is not served (versions: 2, 4)"),
        ({"canary": "2", "percent": 10}, 400, "canary '2' is the stable version itself"),
        ({"canary": "4", "percent": 101}, 400, "percent: Input should be less than or equal"),
        ({"canary": "4", "percent": 10, "x": 1}, 400, "x: Extra inputs are not permitted"),
        (
            {"canary": "4", "percent": 10, "atol": -1},
            400,
            "atol: Input should be greater than or equal to 0",
        ),
        (
            {"canary": "4", "percent": 10, "rtol": "wide"},
            400,
            "rtol: Input should be a valid number",
        ),
    ],
)
def test_bad_shadow_settings_get_one_line(
    triton_shadow: str,
    start_gateway: Callable[..., GatewayServer],
    body: dict[str, object],
    status: int,
    message: str,
) -> None:
    url = start_gateway({v: triton_shadow for v in ("2", "4")}).url
    response = shadow(url, **body)
    assert response.status_code == status and message in response.json()["error"]
    assert httpx.put(f"{url}/admin/shadow/digits", json=body).status_code == 401
    assert httpx.get(f"{url}/admin/shadow/digits", headers=AUTH).status_code == 404
