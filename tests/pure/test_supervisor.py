"""The stack's supervisor: a part that dies, or hangs (stops answering its health check),
is restarted with backoff, and logged."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from modelcanary.asgi_server import AppServer
from modelcanary.local.supervisor import Backoff, HealthCheck, Supervisor
from modelcanary.process import exit_reason
from tests.support.waits import until

QUICK = Backoff(first_s=0.01, cap_s=0.04, reset_after_s=60)


class FakePart:
    """Dies when told; its first `failures` restarts fail."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.dead = False
        self.restarts = 0
        self.stopped = False
        self.lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return 1000 + self.restarts

    def exited(self) -> str | None:
        return "killed by SIGKILL" if self.dead else None

    def restart(self) -> None:
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("port taken")
            self.restarts += 1
            self.dead = False

    def stop(self) -> None:
        self.stopped = True


def test_a_dead_part_is_restarted_and_logged(tmp_path: Path) -> None:
    lines: list[str] = []
    supervisor = Supervisor(tmp_path, lines.append, QUICK, every_s=0.01)
    part = FakePart()
    supervisor.watch("prometheus", part)
    try:
        part.dead = True
        until(lambda: part.restarts == 1 and "restarted" in " ".join(lines), 5, "not restarted")
        part.dead = True
        until(
            lambda: part.restarts == 2 and supervisor.status()["prometheus"].restarts == 2,
            5,
            "not restarted a second time",
        )
    finally:
        supervisor.stop()
        supervisor.join()
    assert lines[0] == "supervisor: prometheus died (killed by SIGKILL); restarting in 0.01 s"
    assert lines[1].startswith("supervisor: prometheus restarted (pid 1001) ")
    assert lines[3].startswith("supervisor: prometheus restarted (pid 1002) ")
    assert "restarting in 0.02 s" in lines[2]  # the delay doubled
    parts = json.loads((tmp_path / "parts.json").read_text())
    assert parts["prometheus"]["state"] == "running" and parts["prometheus"]["pid"] == 1002
    assert parts["prometheus"]["last_exit"] == "killed by SIGKILL"
    assert (tmp_path / "supervisor.log").read_text().count("died (killed") == 2


def test_a_failed_restart_is_tried_again_with_a_longer_delay(tmp_path: Path) -> None:
    lines: list[str] = []
    supervisor = Supervisor(tmp_path, lines.append, QUICK, every_s=0.01)
    part = FakePart(failures=3)
    supervisor.watch("triton", part)
    try:
        part.dead = True
        until(lambda: part.restarts == 1, 5, "not restarted")
        until(lambda: "restarted" in lines[-1], 5, "the restart was not said")
    finally:
        supervisor.stop()
        supervisor.join()
    failures = [line for line in lines if "did not restart" in line]
    assert [f.rsplit("next try in ", 1)[1] for f in failures] == ["0.02 s", "0.04 s", "0.04 s"]
    assert "port taken" in failures[0]
    assert supervisor.status()["triton"].restarts == 1


def test_a_stopped_supervisor_restarts_nothing(tmp_path: Path) -> None:
    supervisor = Supervisor(None, lambda line: None, QUICK, every_s=0.01)
    part = FakePart()
    supervisor.watch("alertmanager", part)
    supervisor.stop()
    supervisor.join()
    part.dead = True
    threading.Event().wait(0.1)
    assert part.restarts == 0


async def hello(scope: dict[str, object], receive: object, send: object) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]


def test_an_in_process_server_whose_thread_ended_comes_back_on_its_port() -> None:
    server = AppServer(hello, name="on-call receiver")
    url = server.start()
    supervisor = Supervisor(None, lambda line: None, QUICK, every_s=0.01)
    supervisor.watch("on-call receiver", server)
    try:
        assert server.exited() is None
        server.server.should_exit = True  # the server's loop ends as if it had crashed
        until(lambda: supervisor.status()["on-call receiver"].restarts == 1, 10, "not restarted")
        assert server.url == url and httpx.get(url).text == "hello"
    finally:
        supervisor.stop()
        server.stop()
        supervisor.join()


async def unavailable(scope: dict[str, object], receive: object, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"not ready"})


@contextmanager
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel does) and never answers: a hung server."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield f"http://127.0.0.1:{silent.getsockname()[1]}/ready"


def test_a_part_that_stops_answering_is_hung_and_one_that_answers_503_is_not() -> None:
    with silent_url() as url:
        check = HealthCheck(url, timeout_s=0.1, failures=3, every_s=0)
        assert [check.hung(float(n)) for n in range(2)] == [None, None]
        assert check.hung(2.0) == (
            f"hung: 3 health checks of {url} failed in a row (no answer within 0.1 s)"
        )
        assert check.hung(3.0) is None  # counting starts again
    server = AppServer(unavailable, name="triton")
    url = server.start() + "/ready"
    try:
        assert httpx.get(url).status_code == 503
        check = HealthCheck(url, timeout_s=1, failures=2, every_s=10)
        assert [check.hung(t) for t in (0.0, 10.0, 20.0, 30.0)] == [None] * 4
        assert check.hung(35.0) is None and check.failed == 0  # not due: nothing asked
    finally:
        server.stop()


class SleepingPart:
    """A real process (`sleep`) standing for a part whose health URL never answers."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(["sleep", "60"])
        self.started = [self.process.pid]

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def exited(self) -> str | None:
        return exit_reason(self.process)

    def restart(self) -> None:
        self.process = subprocess.Popen(["sleep", "60"])
        self.started.append(self.process.pid)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def test_a_hung_part_is_killed_and_restarted(tmp_path: Path) -> None:
    lines: list[str] = []
    supervisor = Supervisor(tmp_path, lines.append, QUICK, every_s=0.01)
    part = SleepingPart()
    first = part.process
    with silent_url() as url:
        supervisor.watch("triton", part, HealthCheck(url, timeout_s=0.1, failures=2, every_s=0))
        try:
            until(
                lambda: supervisor.status()["triton"].restarts == 1,
                10,
                "Triton not restarted",
                context=lambda: lines,
            )
        finally:
            supervisor.stop()
            supervisor.join()
            part.stop()
    assert first.returncode == -signal.SIGKILL  # killed: a stopped process ignores SIGTERM
    assert lines[0] == (
        f"supervisor: triton hung: 2 health checks of {url} failed in a row "
        f"(no answer within 0.1 s); killing it (pid {first.pid})"
    )
    assert lines[1].startswith("supervisor: triton died (hung: 2 health checks")
    assert supervisor.status()["triton"].last_exit.startswith("hung: ")
