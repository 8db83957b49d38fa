"""Server binaries run by modelcanary: free loopback ports, started with a log file,
waited for, stopped."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Literal

import httpx

from modelcanary.errors import UsageError
from modelcanary.waiting import wait_until

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Ports free on the loopback address right now (held together, so all distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def find_binary(names: tuple[str, ...], package: str) -> str:
    """The first of `names` on PATH, or an error with the install command."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise UsageError(
        f"{' or '.join(names)} not found; install it with `apt-get install -y {package}` "
        "(`make setup` does, when run as root)"
    )


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], timeout: float
) -> Literal["ready", "exited", "timeout"]:
    """Poll `url` until it answers 200, the process exits, or the time is up."""

    def answered() -> bool:
        if process.poll() is not None:
            return True
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(answered, timeout):
        return "timeout"
    return "exited" if process.poll() is not None else "ready"


def describe_exit(returncode: int) -> str:
    """`exited with code 1`, or `killed by SIGKILL` for a signal."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def exit_reason(process: subprocess.Popen[bytes] | None) -> str | None:
    """Why a child process is not running (None while it runs)."""
    if process is None:
        return "not running"
    code = process.poll()
    return None if code is None else describe_exit(code)


def log_tail(path: Path, lines: int) -> str:
    """The last lines of a log, joined on one line for an error message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


class ManagedProcess:
    """One child process with its log in the run directory."""

    def __init__(self, name: str, command: list[str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_url: str, timeout: float = 30.0) -> None:
        """Start, then poll `ready_url` until it answers 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches only modelcanary
            )
        outcome = wait_until_ready(ready_url, self.process, timeout)
        if outcome == "ready":
            return
        if outcome == "exited":
            code = self.process.returncode
            self.process = None
            raise UsageError(
                f"{self.name} exited with code {code} at start: {log_tail(self.log_path, 3)} "
                f"(log: {self.log_path})"
            )
        self.stop()
        raise UsageError(f"{self.name} was not ready within {timeout:.0f} s (log: {self.log_path})")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def exited(self) -> str | None:
        """Why the process is not running (None while it runs)."""
        return exit_reason(self.process)

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
