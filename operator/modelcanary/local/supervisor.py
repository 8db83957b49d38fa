"""Keeps the parts of `modelcanary up` running: a part that dies is restarted, with
backoff, and every death and restart is said and logged.

A watcher thread per part polls it; when it died, the watcher restarts it after a delay
that doubles with each restart (0.5 s up to 30 s) and falls back to the first once the
part has run for a minute. A failed restart is retried the same way, for as long as `up`
runs: serving (Triton, the gateway) never stops because a monitor (Prometheus,
Alertmanager, a receiver) did. A process part can have a health check (`HealthCheck`: its
ready URL, a short timeout): one that fails a few checks in a row is hung (stopped,
deadlocked, swapping), so the supervisor kills it (SIGKILL) and restarts it like a part
that died. `RUN_DIR/parts.json` shows each part's pid, state and
restarts; `RUN_DIR/supervisor.log` keeps the events.

Why not supervisord or circus: half of the stack is not a process (the gateway and the
two receivers are servers in `up`'s own process, which no outside supervisor can see or
restart), a restart is more than exec (Triton must load the same versions again, a
server must come back on the same port, and "running" means answering its ready URL,
not a live pid), and a separate daemon would outlive `up` when `up` is killed and need
a second lifecycle (its config, socket and shutdown) for one command. So the
supervision is this loop, inside `up`, over objects that know how to restart themselves.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import httpx

from modelcanary.errors import one_line
from modelcanary.files import write_atomically
from modelcanary.waiting import wait_until

State = Literal["running", "restarting", "stopped"]


class Part(Protocol):
    """A supervised part: Triton, Prometheus, Alertmanager, an in-process server."""

    @property
    def pid(self) -> int | None: ...

    def exited(self) -> str | None: ...

    def restart(self) -> object: ...

    def stop(self) -> object: ...


@dataclass(frozen=True)
class Backoff:
    """Delays before restarts: `first`, doubled each time up to `cap`; back to `first`
    once a part has run `reset_after_s`."""

    first_s: float = 0.5
    cap_s: float = 30.0
    reset_after_s: float = 60.0

    def next(self, delay: float) -> float:
        return min(delay * 2, self.cap_s)


@dataclass
class HealthCheck:
    """GET `url` every `every_s`; `failures` checks in a row that get no answer within
    `timeout_s` mean the part is hung. Any answer, even 503 (Triton with a version not
    ready), means it is not: a restart is for a process that stopped answering."""

    url: str
    timeout_s: float = 2.0
    failures: int = 3
    every_s: float = 1.0
    failed: int = 0
    next_at: float = 0.0

    def hung(self, now: float) -> str | None:
        """Check when due; why the part is hung once it failed `failures` checks in a row."""
        if now < self.next_at:
            return None
        self.next_at = now + self.every_s
        try:
            httpx.get(self.url, timeout=self.timeout_s)
            problem = ""
        except httpx.TimeoutException:
            problem = f"no answer within {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            problem = one_line(exc)
        self.failed = self.failed + 1 if problem else 0
        if self.failed < self.failures:
            return None
        self.failed = 0
        return f"hung: {self.failures} health checks of {self.url} failed in a row ({problem})"


@dataclass
class PartStatus:
    """One line of parts.json."""

    pid: int | None
    state: State = "running"
    restarts: int = 0
    last_exit: str = ""
    since: float = field(default_factory=time.time)


class Supervisor:
    """Watches parts and restarts the ones that die, until `stop`."""

    def __init__(
        self,
        run_dir: Path | None = None,
        say: Callable[[str], None] = print,
        backoff: Backoff = Backoff(),
        every_s: float = 0.2,
    ) -> None:
        self.run_dir, self.say = run_dir, say
        self.backoff, self.every_s = backoff, every_s
        self.parts: dict[str, PartStatus] = {}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def watch(self, name: str, part: Part, health: HealthCheck | None = None) -> None:
        """Start watching a part that runs now (a process of its own, if `health`)."""
        self._update(name, PartStatus(part.pid))
        thread = threading.Thread(
            target=self._watch, args=(name, part, health), name=f"supervise {name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """Stop restarting (before the parts are stopped): a restart under way stops the
        part it started."""
        self._stopping.set()

    def join(self, timeout: float = 10.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def status(self) -> dict[str, PartStatus]:
        with self._lock:
            return dict(self.parts)

    def _watch(self, name: str, part: Part, health: HealthCheck | None) -> None:
        delay, up_since = self.backoff.first_s, time.monotonic()
        while not self._stopping.wait(self.every_s):
            reason = part.exited()
            if reason is None and health is not None:
                reason = health.hung(time.monotonic())
                if reason is not None and not self._stopping.is_set():
                    self._kill_hung(name, part, reason)
            if reason is None:
                if time.monotonic() - up_since >= self.backoff.reset_after_s:
                    delay = self.backoff.first_s
                continue
            if self._stopping.is_set():  # `up` is stopping it
                return
            died = time.monotonic()
            status = self.status()[name]
            self._event(name, f"{name} died ({reason}); restarting in {delay:g} s", reason)
            while True:
                if self._stopping.wait(delay):
                    return
                try:
                    part.restart()
                except Exception as exc:  # any failure: try again, later
                    failure = one_line(exc)
                else:
                    failure = ""
                if self._stopping.is_set():
                    part.stop()
                    return
                delay = self.backoff.next(delay)
                if not failure:
                    break
                self._event(
                    name, f"{name} did not restart: {failure}; next try in {delay:g} s", reason
                )
            up_since = time.monotonic()
            self._update(name, PartStatus(part.pid, "running", status.restarts + 1, reason))
            self._log(
                f"{name} restarted (pid {part.pid}) {up_since - died:.1f} s after it died "
                f"(restart {status.restarts + 1})"
            )

    def _kill_hung(self, name: str, part: Part, reason: str) -> None:
        """SIGKILL a hung part (a stopped process ignores SIGTERM until it resumes) and wait
        until it is gone, so that its restart finds its ports free."""
        self._log(f"{name} {reason}; killing it (pid {part.pid})")
        if part.pid is not None and part.pid != os.getpid():
            os.kill(part.pid, signal.SIGKILL)
            wait_until(lambda: part.exited() is not None, 10.0, every=0.05)

    def _event(self, name: str, message: str, reason: str) -> None:
        status = self.status()[name]
        if status.state != "restarting":
            self._update(name, PartStatus(None, "restarting", status.restarts, reason))
        self._log(message)

    def _update(self, name: str, status: PartStatus) -> None:
        with self._lock:
            self.parts[name] = status
            document = {n: asdict(s) for n, s in self.parts.items()}
        if self.run_dir is not None:
            write_atomically(self.run_dir / "parts.json", json.dumps(document, indent=2) + "\n")

    def _log(self, message: str) -> None:
        self.say(f"supervisor: {message}")
        if self.run_dir is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            with (self.run_dir / "supervisor.log").open("a") as log:
                log.write(f"{stamp} {message}\n")
