"""The cluster comparator (`modelcanary comparator`'s app) fed CloudEvents as KServe's
inference logger sends them for a real Triton's stable version: it pairs them, asks the
canary pinned and compares; bad events and lone halves are counted, never fatal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelcanary.adapters.repo_catalog import reader_pair, repository_reader
from modelcanary.asgi_server import AppServer
from modelcanary.modelrepo.holdout_store import read_holdout
from modelcanary.serving.triton_home import TritonHome
from modelcanary.shadow.service import ComparatorService, ServiceSettings
from tests.conftest import metric_value
from tests.support.kserve_logger import REQUEST_TYPE, ce_headers, serve_and_log
from tests.support.triton import serving_digits
from tests.support.waits import until

pytestmark = pytest.mark.slow
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS, BATCH = 50, 4


@pytest.fixture(scope="module")
def triton_24(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Triton serving digits 2 (stable) and 4 (labels shifted by one)."""
    with serving_digits(digits_repo, triton_home, tmp_path_factory.mktemp("run"), [2, 4]) as url:
        yield url


@pytest.fixture
def comparator(digits_repo: Path) -> Iterator[str]:
    """The comparator service reading the example repository, on a free port."""
    reader = repository_reader(str(digits_repo))
    settings = ServiceSettings(max_event_bytes=64 * 1024, pending_s=5)
    app = ComparatorService(settings, TOKEN, lambda m, s, c: reader_pair(reader, m, s, c))
    server = AppServer(app, "127.0.0.1", 0, name="comparator")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def holdout(digits_repo: Path) -> np.ndarray:
    inputs, _ = read_holdout(digits_repo / "digits" / "2" / "holdout.npz")
    return inputs["pixels"].astype(np.float32)


def value(url: str, name: str, **labels: str) -> float:
    return metric_value(f"{url}/metrics", name, **labels)


def test_the_label_bug_disagrees_on_logged_traffic(
    triton_24: str, comparator: str, holdout: np.ndarray
) -> None:
    canary_url = f"{triton_24}/v2/models/digits/versions/4/infer"
    body = {
        "stable": "2",
        "canary": "4",
        "percent": 100,
        "canary_url": canary_url,
        "atol": 0.002,
        "rtol": 0.05,
    }
    put = httpx.put(f"{comparator}/admin/shadow/digits", json=body, headers=AUTH)
    assert put.status_code == 200, put.text
    assert put.json()["kinds"] == {"logits": "classification"}
    assert (put.json()["atol"], put.json()["rtol"]) == (0.002, 0.05)  # the rollout's tolerance
    with httpx.Client(timeout=10) as client:
        for start in range(0, REQUESTS * BATCH, BATCH):
            answer = serve_and_log(
                client,
                triton_24,
                f"{comparator}/",
                "digits",
                holdout[start : start + BATCH],
                version="2",
            )
            assert answer.status_code == 200
    pairs = lambda: value(comparator, "modelcanary_shadow_pairs", model="digits", version="4")  # noqa: E731
    until(lambda: pairs() == REQUESTS * BATCH, 30, "not every logged request was compared")
    agreeing = value(comparator, "modelcanary_shadow_agreeing_pairs", version="4")
    assert agreeing / pairs() < 0.05  # labels shifted by one: about 0%
    assert value(comparator, "modelcanary_comparator_events", outcome="paired") == REQUESTS
    assert value(comparator, "modelcanary_shadow_dropped") == 0
    # the canary's own logged answers (were its predictor logging too) are not compared
    with httpx.Client(timeout=10) as client:
        serve_and_log(client, triton_24, f"{comparator}/", "digits", holdout[:BATCH], version="4")
    assert value(comparator, "modelcanary_comparator_events", outcome="paired") == REQUESTS + 1
    assert pairs() == REQUESTS * BATCH
    # stopping ends the comparison
    assert httpx.delete(f"{comparator}/admin/shadow/digits", headers=AUTH).json()["removed"]
    with httpx.Client(timeout=10) as client:
        serve_and_log(client, triton_24, f"{comparator}/", "digits", holdout[:BATCH], version="2")
    assert pairs() == REQUESTS * BATCH


def test_bad_events_are_counted_and_the_comparator_goes_on(
    triton_24: str, comparator: str, holdout: np.ndarray
) -> None:
    canary_url = f"{triton_24}/v2/models/digits/versions/4/infer"
    body = {"stable": "2", "canary": "4", "percent": 100, "canary_url": canary_url}
    assert (
        httpx.put(f"{comparator}/admin/shadow/digits", json=body, headers=AUTH).status_code == 200
    )
    bad = [
        (ce_headers("dev.knative.ping", "x", "digits", "s"), b"{}", 400),
        ({"content-type": "application/json"}, b"{}", 400),
        (ce_headers(REQUEST_TYPE, "big", "digits", "s"), b"x" * (64 * 1024 + 1), 413),
    ]
    for head, content, status in bad:
        assert httpx.post(f"{comparator}/", content=content, headers=head).status_code == status
    # a request and a garbage "response": paired, then dropped as unparseable or invalid
    for kind, content in (
        (REQUEST_TYPE, b'{"inputs": 1}'),
        (
            "org.kubeflow.serving.inference.response",
            b'{"model_name": "digits", "model_version": "2", "outputs": 3}',
        ),
    ):
        head = ce_headers(kind, "junk", "digits", "s")
        assert httpx.post(f"{comparator}/", content=content, headers=head).status_code == 202
    until(
        lambda: value(comparator, "modelcanary_shadow_dropped", reason="unparseable") == 1,
        10,
        "the unparseable answer was not dropped",
    )
    assert value(comparator, "modelcanary_comparator_events", outcome="invalid") == 2
    assert value(comparator, "modelcanary_comparator_events", outcome="too_large") == 1
    with httpx.Client(timeout=10) as client:
        serve_and_log(client, triton_24, f"{comparator}/", "digits", holdout[:BATCH], version="2")
    until(
        lambda: value(comparator, "modelcanary_shadow_pairs", version="4") == BATCH,
        10,
        "the next request was not compared",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"stable": "2", "canary": "9", "percent": 10, "canary_url": "http://x"}, "manifest"),
        (
            {"stable": "2", "canary": "2", "percent": 10, "canary_url": "http://x"},
            "stable version itself",
        ),
        (
            {"stable": "2", "canary": "4", "percent": 10, "canary_url": "x"},
            "must be an http(s) URL",
        ),
        ({"stable": "2", "canary": "4", "percent": 10}, "canary_url: Field required"),
        (
            {"stable": "2", "canary": "4", "percent": 10, "canary_url": "http://x", "atol": -1},
            "atol: Input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_comparisons_get_one_line(
    comparator: str, body: dict[str, object], message: str
) -> None:
    response = httpx.put(f"{comparator}/admin/shadow/digits", json=body, headers=AUTH)
    assert response.status_code == 400 and message in response.json()["error"], response.text
    assert "\n" not in response.json()["error"]
    assert httpx.put(f"{comparator}/admin/shadow/digits", json=body).status_code == 401
