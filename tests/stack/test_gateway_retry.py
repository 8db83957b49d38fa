"""Retry on stable, against the real Triton with faults injected into the canary: the user
gets stable's answer, the canary's failure still counts against it, within a budget."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from modelcanary.local.demo import _answered, _retried
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_server import TritonServer
from tests.support.gateway import HEADER, StartGateway, X, body, digits_route, server_errors, value

pytestmark = pytest.mark.slow
RETRIES = "modelcanary_gateway_retries_total"
RETRIED_FROM = "x-modelcanary-retried-from"


@pytest.fixture
def failing(faulty_triton: TritonServer) -> Iterator[Callable[[int], None]]:
    """Make a version fail every request; the faults are cleared after the test."""
    assert faulty_triton.faults_dir is not None
    faults_dir = faulty_triton.faults_dir

    def fail(version: int) -> None:
        set_faults(faults_dir, "digits", version, FaultSpec(error_ratio=1.0))

    yield fail
    for version in (1, 2):
        set_faults(faults_dir, "digits", version, FaultSpec())


def http(server: TritonServer) -> str:
    assert server.endpoints is not None
    return server.endpoints.http


def send(url: str, count: int, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    with httpx.Client() as client:
        return [
            client.post(f"{url}/v2/models/digits/infer", json=body(X[:1]), headers=headers)
            for _ in range(count)
        ]


def retries(url: str, outcome: str) -> float:
    return value(url, RETRIES, model="digits", from_version="2", to_version="1", outcome=outcome)


def test_a_failing_canary_fails_no_user(
    faulty_triton: TritonServer, failing: Callable[[int], None], start_gateway: StartGateway
) -> None:
    url = start_gateway(digits_route(http(faulty_triton), {"1": 50, "2": 50}))
    failing(2)
    responses = send(url, 100)
    assert Counter(r.status_code for r in responses) == {200: 100}
    assert {r.headers[HEADER] for r in responses} == {"1"}
    retried = sum(r.headers.get(RETRIED_FROM) == "2" for r in responses)
    assert retried > 20  # about half of them went to the canary first
    # the canary's failures count against it; the retries in a metric of their own
    assert server_errors(url, "2") == retried
    assert retries(url, "answered") == retried
    assert retries(url, "failed") == retries(url, "over_budget") == 0
    # what the demo reports: the canary's failed attempts, none of them a user's failure
    assert _answered(url, "2", errors_only=True) - _retried(url, "2") == 0 < _retried(url, "2")
    # pinned to the canary by the client: its failure is the client's answer, no retry
    pinned = send(url, 3, {HEADER: "2"})
    assert [r.status_code for r in pinned] == [500] * 3
    assert "injected fault: digits:2" in pinned[0].json()["error"]
    assert retries(url, "answered") == retried and server_errors(url, "2") == retried + 3


def test_when_stable_fails_too_the_user_gets_its_error_once(
    faulty_triton: TritonServer, failing: Callable[[int], None], start_gateway: StartGateway
) -> None:
    url = start_gateway(digits_route(http(faulty_triton), {"1": 50, "2": 50}))
    failing(2)
    failing(1)
    responses = send(url, 40)
    assert {r.status_code for r in responses} == {500}
    retried = sum(r.headers.get(RETRIED_FROM) == "2" for r in responses)
    assert 0 < retried < 40
    assert retries(url, "failed") == retried and retries(url, "answered") == 0
    # every request tried at most twice: the first try, and stable once after a canary
    assert server_errors(url, "2") == retried
    assert server_errors(url, "1") == 40


def test_the_budget_caps_the_retries(
    faulty_triton: TritonServer, failing: Callable[[int], None], start_gateway: StartGateway
) -> None:
    retry = {"ratio": 0.2, "min_per_s": 0, "window_s": 600}
    url = start_gateway(digits_route(http(faulty_triton), {"1": 50, "2": 50}), retry=retry)
    failing(2)
    responses = send(url, 100)
    to_canary = server_errors(url, "2")
    answered, refused = retries(url, "answered"), retries(url, "over_budget")
    assert 0 < answered <= 20 and answered + refused == to_canary
    assert sum(r.status_code == 500 for r in responses) == refused > 0
    assert sum(r.headers.get(RETRIED_FROM) == "2" for r in responses) == answered


def test_retry_can_be_turned_off(
    faulty_triton: TritonServer, failing: Callable[[int], None], start_gateway: StartGateway
) -> None:
    url = start_gateway(
        digits_route(http(faulty_triton), {"1": 50, "2": 50}), retry={"enabled": False}
    )
    failing(2)
    responses = send(url, 20)
    assert sum(r.status_code == 500 for r in responses) == server_errors(url, "2") > 0
    assert RETRIED_FROM not in {k for r in responses for k in r.headers}


def test_a_canary_that_does_not_answer_in_time_is_retried_on_stable(
    faulty_triton: TritonServer, start_gateway: StartGateway
) -> None:
    silent = socket.socket()  # accepts connections (the kernel does), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        canary = f"http://127.0.0.1:{silent.getsockname()[1]}"
        route = {
            "stable": "1",
            "upstreams": {"1": http(faulty_triton), "2": canary},
            "weights": {"1": 50, "2": 50},
        }
        url = start_gateway({"digits": route}, upstream_timeout_s=0.5, readiness_interval_s=0)
        responses = send(url, 16)
        assert {(r.status_code, r.headers[HEADER]) for r in responses} == {(200, "1")}
        timed_out = value(url, "modelcanary_gateway_requests_total", version="2", code="504")
        assert timed_out == retries(url, "answered") > 0
    finally:
        silent.close()
