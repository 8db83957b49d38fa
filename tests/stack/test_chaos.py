"""Fault injection against `modelcanary up` as a user runs it (`make chaos`).

One `modelcanary up` process (real Triton, gateway, Prometheus, Alertmanager) under steady
load through the gateway; a part of the stack is killed with SIGKILL. A monitor's death
must cost no request and the monitor must come back on the same URL, also in the middle of
a rollout, which holds while it has no data and then goes on; a killed Triton must come
back with its versions, and serving with it. `up` itself must keep running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from modelcanary.load.generator import BackgroundLoad, request_bodies, run_load
from modelcanary.load.report import LoadReport
from modelcanary.local.controller import LocalRollout
from modelcanary.serving.triton_home import TritonHome
from modelcanary.waiting import wait_until
from tests.support.rollout_spec import rollout_spec
from tests.support.up_process import Up, running_up
from tests.support.waits import until

pytestmark = pytest.mark.slow
RATE = 20.0
PROGRAMS = {
    "prometheus": ("prometheus",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
    "triton": ("tritonserver",),
}


@pytest.fixture(scope="module")
def up(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    versions = ["--model", "digits", "--stable", "1", "--canary", "2", "--canary-weight", "30"]
    run_dir = tmp_path_factory.mktemp("chaos") / "run"
    with running_up(run_dir, "--repo", str(digits_repo), *versions) as stack:
        yield stack


@pytest.fixture(scope="module")
def bodies(digits_repo: Path) -> list[bytes]:
    return request_bodies(digits_repo, "digits")


def ready_url(up: Up, part: str) -> str:
    """A monitor's ready URL; Alertmanager's carries the stack's password."""
    if part != "alertmanager":
        return f"{up.urls[part]}/-/ready"
    password = Path(up.urls["alertmanager_password_file"]).read_text().strip()
    return up.urls[part].replace("://", f"://modelcanary:{password}@") + "/-/ready"


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(up: Up, expression: str) -> float | None:
    """An instant query's first value (None when empty or Prometheus is not answering)."""
    try:
        reply = httpx.get(
            f"{up.urls['prometheus']}/api/v1/query", params={"query": expression}, timeout=2
        )
        result = reply.json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return float(result[0]["value"][1]) if result else None


def kill_and_wait(up: Up, part: str, ready_url: str, timeout: float) -> float:
    """SIGKILL the part; seconds until a new process of it answers `ready_url`."""
    before = up.child(PROGRAMS[part])
    assert before is not None, f"no {part} process under modelcanary up:\n{up.output()}"
    os.kill(before, signal.SIGKILL)
    killed = time.monotonic()
    back = wait_until(
        lambda: (
            not up.running()
            or (up.child(PROGRAMS[part]) not in (None, before) and ready(ready_url))
        ),
        timeout,
        every=0.2,
    )
    assert up.running(), f"modelcanary up exited after {part} was killed:\n{up.output()}"
    assert back, f"{part} was not restarted within {timeout:.0f} s:\n{up.output()}"
    return time.monotonic() - killed


def no_failures(report: LoadReport | None) -> None:
    assert report is not None
    assert report.total.errors == 0 and report.skipped == 0, report.table()
    assert report.sent > 0


@pytest.mark.parametrize("part", ["prometheus", "alertmanager"])
def test_a_killed_monitor_comes_back_and_costs_no_request(
    up: Up, bodies: list[bytes], part: str
) -> None:
    scraped = 'count_over_time(up{job="gateway"}[10m])'
    load = BackgroundLoad(up.urls["gateway"], "digits", bodies, RATE).start()
    try:
        time.sleep(2)
        killed_at = time.time()
        downtime = kill_and_wait(up, part, ready_url(up, part), 60)
        print(f"{part} back after {downtime:.1f} s")
        time.sleep(3)  # and serving goes on after the restart
    finally:
        report = load.stop()
    no_failures(report)
    assert f"{part} died" in up.output() and f"{part} restarted" in up.output()
    if part == "prometheus":  # the restarted Prometheus started fresh and scrapes again
        until(lambda: (query(up, scraped) or 0) >= 3, 30, "the gateway not scraped again", 0.5)
        tsdb = httpx.get(f"{up.urls['prometheus']}/api/v1/status/tsdb").json()["data"]
        assert tsdb["headStats"]["minTime"] / 1000 >= killed_at


def chaos_spec(stable: int, canary: int) -> dict[str, object]:
    return rollout_spec(
        stable,
        canary,
        progressDeadline="4m",
        analysis={
            "latencyP99": {"maxSeconds": 0.5, "maxRatioToStable": 5, "ratioFloorSeconds": 0.2},
            "noData": {"after": "60s", "action": "pause"},  # a restart is well within
        },
    )


def test_a_rollout_holds_while_its_monitors_restart_and_then_finishes(
    up: Up, bodies: list[bytes], tmp_path: Path
) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(yaml.safe_dump(chaos_spec(1, 2)))
    start = [sys.executable, "-m", "modelcanary", "rollout", "start", "-f", str(spec)]
    command = [*start, "--run-dir", str(up.run_dir)]
    load = BackgroundLoad(up.urls["gateway"], "digits", bodies, RATE).start()
    controller = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rollout = LocalRollout.of(up.run_dir, "digits")
    try:

        def at_step(step: int) -> bool:
            state = rollout.store.load()
            return controller.poll() is not None or (state is not None and state.step >= step)

        def running() -> bool:
            if controller.poll() is None:
                return True
            assert controller.stdout is not None
            print(controller.stdout.read().decode(errors="replace"))
            return False

        until(lambda: at_step(1), 90, "the rollout never at its first step", 0.2)
        assert running()
        kill_and_wait(up, "prometheus", ready_url(up, "prometheus"), 60)
        until(lambda: at_step(2), 90, "the rollout never at its second step", 0.2)
        assert running()
        kill_and_wait(up, "alertmanager", ready_url(up, "alertmanager"), 60)
        output, _ = controller.communicate(timeout=240)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait(10)
        report = load.stop()
    text = output.decode(errors="replace")
    assert controller.returncode == 0, text
    final = rollout.store.load()
    assert final is not None and final.phase == "Promoted", text
    moves = [t.step for t in final.history if t.action in ("start", "advance")]
    assert moves == [0, 1, 2], text  # each step once, none skipped
    no_failures(report)


def test_a_killed_triton_comes_back_with_its_versions(up: Up, bodies: list[bytes]) -> None:
    gateway = up.urls["gateway"]
    token = Path(up.urls["gateway_admin_token_file"]).read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    asked = httpx.get(f"{gateway}/admin/models/digits/weights", headers=auth).json()["weights"]
    load = BackgroundLoad(gateway, "digits", bodies, RATE).start()
    try:
        time.sleep(2)
        downtime = kill_and_wait(up, "triton", f"{gateway}/v2/health/ready", 240)
        print(f"Triton back after {downtime:.1f} s")
    finally:
        during = load.stop()
    assert during is not None
    print(during.table())
    for version in ("1", "2", "3"):
        assert ready(f"{gateway}/v2/models/digits/versions/{version}/ready"), version

    def view() -> dict[str, object]:
        found: dict[str, object] = httpx.get(
            f"{gateway}/admin/models/digits/weights", headers=auth
        ).json()
        return found

    # the next readiness probe
    until(lambda: view()["unready"] == [], 5, "a version stayed unready", context=view)
    assert view()["weights"] == view()["serving"] == asked
    after = asyncio.run(run_load(gateway, "digits", bodies, RATE, 4))
    no_failures(after)
    assert {v.version for v in after.versions} == {v for v, w in asked.items() if w}
    assert "triton-0 died" in up.output() and "triton-0 restarted" in up.output()
