"""`modelcanary operator` as its own process, as in a pod: it can be SIGKILLed, and its
CPU time and memory are its own.

It authenticates with a kubeconfig (env KUBECONFIG: the operator's `login` handler falls
back to kopf's kubeconfig login, and its API client to `load_kube_config()`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelcanary.process import free_ports
from tests.support.apiserver import REPO, _die_with_parent
from tests.support.waits import until

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """A process's CPU time so far and its memory now."""

    cpu_s: float
    rss_bytes: int


class OperatorProcess:
    """One operator replica; its log is LOG."""

    def __init__(
        self, kubeconfig: Path, namespace: str, prometheus: str, log: Path, *args: str
    ) -> None:
        (self.metrics_port,) = free_ports(1)
        self.log = log
        self.argv = [
            sys.executable,
            "-m",
            "modelcanary",
            "operator",
            f"--namespace={namespace}",
            f"--prometheus={prometheus}",
            f"--metrics-port={self.metrics_port}",
            *args,
        ]
        path = os.pathsep.join(filter(None, [str(REPO / "operator"), os.environ.get("PYTHONPATH")]))
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": path,
            "PYTHONUNBUFFERED": "1",
        }
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics/"  # /metrics redirects here

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    def __enter__(self) -> OperatorProcess:
        """Started (and ready); stopped when the block ends."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Spawn, then wait until ready."""
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> OperatorProcess:
        """Start the process (from the main thread: it dies with the thread that spawned it)."""
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> OperatorProcess:
        """Return once its metrics server answers (kopf's startup handler ran)."""
        assert self.popen is not None, "not started"
        popen, health = self.popen, f"http://127.0.0.1:{self.metrics_port}/healthz"

        def answers() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(health, timeout=1).is_success
            return False

        def exited() -> str | None:
            code = popen.poll()
            return None if code is None else f"it exited with {code}"

        try:
            until(answers, timeout, "the operator did not answer /healthz", gone=exited)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{self.tail()}") from None
        return self

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def usage(self) -> Usage:
        """CPU seconds (user + system) and resident memory, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        rss = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE
        return Usage(cpu, rss)

    def kill(self) -> None:
        """SIGKILL: no cleanup handler runs, the Lease is not released."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (the Lease is released), then SIGKILL after TIMEOUT seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
