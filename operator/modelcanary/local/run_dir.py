"""What `modelcanary up` keeps in its run directory between runs: its ports, and a lock.

`ports.json` names the port of each part (`gateway`, `triton_http`, ...). A part whose
port is kept there listens on it again, so a restarted `up` (after Ctrl-C, or after it was
killed) serves on the URLs the last one did, and clients and the controller that read
`up.json` keep working. A new part gets a free port, which is then kept.

`up.lock` is held (flock) while an `up` runs in the directory: a second `up` there is
refused, and an `up` that gets the lock knows the previous one is gone, so the processes it
left running (Triton, Prometheus, Alertmanager: they have sessions of their own and outlive
a killed `up`) are stopped before their ports are needed again. They are found by their
pids in `parts.json`, and only if their command line names this run directory.

A rollout that `modelcanary rollout start` left unfinished in the run directory gives the
gateway its split (`resumed_split`): the controller applies its recorded weight only when
it first sees a rollout, so a running controller would not set it again on a new gateway.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO

from modelcanary.errors import ModelcanaryError, UsageError
from modelcanary.files import write_atomically
from modelcanary.local.controller import LocalRollout
from modelcanary.process import LOOPBACK, free_ports
from modelcanary.rollout.intents import FINISHED
from modelcanary.waiting import wait_until

PORTS_FILE = "ports.json"
LOCK_FILE = "up.lock"
SHM_PREFIX = re.compile(rb"shm-region-prefix-name=(modelcanary_[0-9a-f]+_)")


class PortBook:
    """The ports of one run directory: the kept ones, and free ones for new parts."""

    def __init__(self, run_dir: Path, fixed: dict[str, int] | None = None) -> None:
        self.path = run_dir / PORTS_FILE
        self.ports: dict[str, int] = {}
        if self.path.is_file():
            try:
                kept = json.loads(self.path.read_text())
                self.ports = {str(k): int(v) for k, v in dict(kept).items()}
            except (ValueError, TypeError) as exc:
                raise UsageError(
                    f"{self.path}: not a JSON object of ports ({exc}); remove it to start "
                    "on new ports"
                ) from None
        self.fixed = dict(fixed or {})
        self.ports.update(self.fixed)

    def check(self) -> None:
        """Every kept port can be listened on now; else a one-line error naming the part."""
        for name, port in self.ports.items():
            taken = _taken(port)
            if taken:
                given = "given with --port" if name in self.fixed else f"kept in {self.path}"
                remedy = (
                    "choose another --port"
                    if name in self.fixed
                    else f"stop what listens there, or remove {self.path} to start on new ports"
                )
                raise UsageError(f"port {port} of the {name} ({given}) is taken: {taken}; {remedy}")

    def port(self, name: str) -> int:
        """The part's kept port, or a free one that is then kept."""
        if name not in self.ports:
            used = set(self.ports.values())
            while (port := free_ports(1)[0]) in used:
                pass
            self.ports[name] = port
            self.save()
        return self.ports[name]

    def save(self) -> None:
        write_atomically(self.path, json.dumps(self.ports, indent=2, sort_keys=True) + "\n")


def _taken(port: int) -> str:
    """Why nothing could listen on the port now ('' when it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


class RunDirLock:
    """Held while an `up` runs in the directory (released by the kernel when it dies)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.handle: IO[str] | None = None

    def acquire(self) -> int | None:
        """Take the lock; the pid of the previous `up` in this directory, if one ran."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise UsageError(
                f"another `modelcanary up` (pid {holder}) runs in {self.run_dir}; stop it "
                "first, or pass another --run-dir"
            ) from None
        handle.seek(0)
        previous = handle.read().strip()
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return int(previous) if previous.isdigit() else None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file releases the lock
            self.handle = None


def resumed_split(
    run_dir: Path, model: str, served: list[int], say: Callable[[str], None]
) -> tuple[str, dict[str, int]] | None:
    """The stable version and split of the unfinished rollout of `model` in the run
    directory (None without one, or when it cannot be read or its versions are not served)."""
    rollout = LocalRollout.of(run_dir, model)
    try:
        state = rollout.store.load()
        if state is None or state.phase in FINISHED:
            return None
        spec = rollout.spec()
    except ModelcanaryError as exc:
        say(f"not resuming the rollout in {rollout.directory}: {exc}")
        return None
    stable, canary = spec.stable.version, spec.canary.version
    if not {stable, canary} <= {str(v) for v in served}:
        say(f"not resuming the rollout {stable} -> {canary}: a version of it is not served")
        return None
    weights = {stable: 100 - state.weight, canary: state.weight}
    say(
        f"gateway: {model} split as the {state.phase} rollout {stable} -> {canary} left it: "
        f"{stable}={100 - state.weight}, {canary}={state.weight}"
    )
    return stable, weights


def stop_leftovers(
    run_dir: Path, previous_up: int | None, say: Callable[[str], None], timeout_s: float = 15.0
) -> list[int]:
    """Stop the processes an `up` that is gone left running in `run_dir` (call with the
    lock held); return their pids. Each one's process group goes (Triton's backend stubs
    share it), and a Triton's shared memory regions."""
    try:
        parts = json.loads((run_dir / "parts.json").read_text())
    except (OSError, ValueError):
        return []
    stopped = []
    for name, status in dict(parts).items():
        pid = status.get("pid") if isinstance(status, dict) else None
        if not isinstance(pid, int) or pid in (os.getpid(), previous_up):
            continue
        command = _command_line(pid)
        if command is None or str(run_dir).encode() not in command:
            continue
        say(f"stopping {name} (pid {pid}), left running by an `up` that was killed")
        _stop(pid, timeout_s)
        prefix = SHM_PREFIX.search(command)
        if prefix is not None:
            for region in Path("/dev/shm").glob(f"{prefix.group(1).decode()}*"):
                region.unlink(missing_ok=True)
        stopped.append(pid)
    return stopped


def _stop(pid: int, timeout_s: float) -> None:
    """SIGTERM, SIGKILL if it is still there after `timeout_s`, then SIGKILL to what is
    left of its group."""
    _signal_group(pid, signal.SIGTERM)
    if not wait_until(lambda: _command_line(pid) is None, timeout_s, every=0.1):
        _signal_group(pid, signal.SIGKILL)
        wait_until(lambda: _command_line(pid) is None, 5.0, every=0.1)
    _signal_group(pid, signal.SIGKILL)


def _command_line(pid: int) -> bytes | None:
    """The process' command line, None once it is gone (or a zombie)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return command or None


def _signal_group(pid: int, signum: signal.Signals) -> None:
    """The process, and its group when it leads one (every part runs in a session of its own)."""
    for send in (os.kill, os.killpg):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signum)
