"""`modelcanary up` as a user runs it: a process of its own, with its output in the run
directory, the URLs it wrote, and its child processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelcanary.waiting import wait_until


@dataclass
class Up:
    """A running `modelcanary up` and what it wrote."""

    process: subprocess.Popen[bytes]
    run_dir: Path
    urls: dict[str, str]
    out: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def child(self, programs: tuple[str, ...]) -> int | None:
        """The pid of a child process running one of `programs` (None while there is none)."""
        for pid, program in children(self.process.pid):
            if program in programs:
                return pid
        return None

    def parts(self) -> dict[str, dict[str, object]]:
        """parts.json: each part's pid, state and restarts."""
        parts: dict[str, dict[str, object]] = json.loads((self.run_dir / "parts.json").read_text())
        return parts

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it does not stop), as Ctrl-C would."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_up(run_dir: Path, *args: str, out_name: str = "up.out", timeout: float = 240) -> Up:
    """Start `modelcanary up --run-dir RUN_DIR ARGS...` and wait until it wrote up.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "up.json").unlink(missing_ok=True)
    out = run_dir.parent / f"{run_dir.name}-{out_name}"
    command = [sys.executable, "-m", "modelcanary", "up", "--run-dir", str(run_dir), *args]
    with out.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    up = Up(process, run_dir, {}, out)
    try:
        started = wait_until(
            lambda: (run_dir / "up.json").exists() or not up.running(), timeout, every=0.5
        )
        assert started and up.running(), f"modelcanary up did not start:\n{up.output()}"
        up.urls = json.loads((run_dir / "up.json").read_text())
    except BaseException:
        up.stop()
        raise
    return up


@contextmanager
def running_up(run_dir: Path, *args: str) -> Iterator[Up]:
    """`start_up`, stopped after the block."""
    up = start_up(run_dir, *args)
    try:
        yield up
    finally:
        up.stop()


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def children(parent: int) -> list[tuple[int, str]]:
    """(pid, program name) of each live child process of `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            argv0 = (stat.parent / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append((int(stat.parent.name), Path(argv0.decode()).name))
    return found
