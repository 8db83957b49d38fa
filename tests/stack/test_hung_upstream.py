"""A hung Triton (SIGSTOP: it holds its connections and answers nothing) is routed around
and restarted, and never holds up a weight change.

The gateway finds it unready within a probe or two, abandons the requests waiting on it
and answers those that would go to it 503 at once, instead of holding them for the
upstream timeout (30 s); a rollback's weight change lands at once; under `modelcanary up` the supervisor finds it failing its health
checks, kills it and starts it again, and serving resumes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from modelcanary.load.generator import request_bodies
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer
from tests.support.up_process import alive, start_up
from tests.support.waits import until

pytestmark = pytest.mark.slow
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUNDED = 5.0  # a client's timeout here: far below the gateway's 30 s upstream timeout


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process is SIGSTOP'd in the block, and resumed after it, whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)


def weights(url: str, token: str, split: dict[str, int]) -> httpx.Response:
    return httpx.put(
        f"{url}/admin/models/digits/weights",
        json={"weights": split},
        headers={"Authorization": f"Bearer {token}"},
        timeout=BOUNDED,
    )


def infer(url: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/digits/infer", content=body, timeout=BOUNDED)


def test_the_gateway_routes_around_a_hung_triton_and_rolls_back_at_once(
    digits_repo: Path, triton_home: TritonHome, tmp_path: Path
) -> None:
    body = request_bodies(digits_repo, "digits")[0]
    with TritonServer(digits_repo, tmp_path, triton_home) as triton:
        endpoints = triton.start()
        triton.load("digits", [1, 2])
        assert triton.pid is not None
        route = {
            "stable": "1",
            "upstreams": {"1": endpoints.http, "2": endpoints.http},
            "weights": {"1": 70, "2": 30},
        }
        config = parse_config({"models": {"digits": route}, "readiness_interval_s": 0.2}, "test")
        front = GatewayServer(Gateway(config, TOKEN))
        front.start()
        try:
            assert infer(front.url, body).status_code == 200
            with stopped(triton.pid):
                in_flight = infer(front.url, body)  # sent before any probe could fail
                assert in_flight.status_code == 503, in_flight.text
                assert in_flight.json()["error"] in {
                    f"version {v} of digits stopped answering its readiness probe while this "
                    "request waited for it"
                    for v in ("1", "2")
                }
                rollback = weights(front.url, TOKEN, {"1": 100})
                assert rollback.status_code == 200, rollback.text
                assert rollback.json()["weights"] == {"1": 100, "2": 0}

                def view() -> object:
                    return httpx.get(f"{front.url}/admin/models/digits/weights", headers=AUTH)

                until(
                    lambda: view().json()["unready"] == ["1", "2"],
                    10,
                    "the hung versions stayed ready",
                )
                reply = infer(front.url, body)
                assert reply.status_code == 503, reply.text
                assert reply.json()["error"] == (
                    "version 1 of digits is not ready (its last readiness probe failed)"
                )
                pinned = httpx.post(
                    f"{front.url}/v2/models/digits/versions/2/infer", content=body, timeout=BOUNDED
                )
                assert pinned.status_code == 503
                version_ready = f"{front.url}/v2/models/digits/versions/2/ready"
                assert httpx.get(version_ready, timeout=BOUNDED).status_code == 504
                ready = httpx.get(f"{front.url}/v2/health/ready", timeout=BOUNDED)
                assert ready.status_code == 503 and "did not answer within 1 s" in ready.text
                step = weights(front.url, TOKEN, {"1": 50, "2": 50})  # gives the canary more
                assert step.status_code == 400
                assert step.json()["error"] == (
                    f"digits version 2 at {endpoints.http}/v2/models/digits/versions/2/ready "
                    "did not answer within 1 s; weights unchanged"
                )
            until(lambda: view().json()["unready"] == [], 10, "the versions never ready again")
            assert infer(front.url, body).status_code == 200
        finally:
            front.stop()


def test_up_restarts_a_hung_triton_and_serving_resumes(
    digits_repo: Path, triton_home: TritonHome, tmp_path: Path
) -> None:
    body = request_bodies(digits_repo, "digits")[0]
    stable = ("--model", "digits", "--stable", "1")
    canary = ("--canary", "2", "--canary-weight", "30", "--versions", "1,2")
    up = start_up(tmp_path / "run", "--repo", str(digits_repo), *stable, *canary)
    try:
        gateway = up.urls["gateway"]
        token = Path(up.urls["gateway_admin_token_file"]).read_text().strip()
        hung = int(str(up.parts()["triton-0"]["pid"]))
        assert infer(gateway, body).status_code == 200
        with stopped(hung):
            rollback = weights(gateway, token, {"1": 100})
            assert rollback.status_code == 200, rollback.text
            assert rollback.json()["weights"] == {"1": 100, "2": 0}

            def unready() -> object:
                view = httpx.get(
                    f"{gateway}/admin/models/digits/weights",
                    headers={"Authorization": f"Bearer {token}"},
                )
                return view.json()["unready"]

            def restarted() -> bool:
                triton = up.parts()["triton-0"]
                return triton["state"] == "running" and triton["restarts"] == 1

            until(
                lambda: unready() == ["1", "2"],
                30,
                "the hung versions stayed ready",
                context=up.output,
            )
            assert infer(gateway, body).status_code == 503  # at once, not after 30 s
            until(restarted, 120, "the hung Triton not restarted", context=up.output)
            assert not alive(hung)  # the supervisor killed it
        log = (up.run_dir / "supervisor.log").read_text()
        assert "triton-0 hung: 3 health checks of" in log and "killing it" in log, log
        until(lambda: infer(gateway, body).status_code == 200, 30, "no answer after the restart")
    finally:
        up.stop()
