"""Rollouts on `modelcanary up --replicas 2` while Triton replicas are killed (issue 20).

One `up` process with two Triton replicas, steady load through the gateway, the controller
as a process of its own. During a healthy rollout both replicas are killed with SIGKILL,
one after the other: the canary is still promoted, the canary requests the checks count
never go down, and hardly a user request fails. During an erroring one (a fault, which
every replica reads) a replica is killed too: it is still rolled back, on counts that
were not reset.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.load.report import LoadReport
from modelcanary.local.controller import LocalRollout
from modelcanary.rollout.state import RolloutState
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome
from tests.support.rollout_spec import rollout_spec
from tests.support.up_process import Up, alive, running_up
from tests.support.waits import until

pytestmark = pytest.mark.slow
RATE = 30.0
MODELCANARY = [sys.executable, "-m", "modelcanary"]


@pytest.fixture(scope="module")
def up(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    versions = ["--model", "digits", "--stable", "1", "--versions", "1,2,3", "--replicas", "2"]
    run_dir = tmp_path_factory.mktemp("replicas") / "run"
    with running_up(run_dir, "--repo", str(digits_repo), *versions) as stack:
        yield stack


def spec(stable: int, canary: int) -> dict[str, object]:
    return rollout_spec(
        stable,
        canary,
        steps=[10, 25, 50, 75, 100],
        interval="5s",
        shadow=None,
        analysis={"latencyP99": None, "noData": {"after": "30s", "action": "pause"}},
    )


def state(up: Up) -> RolloutState:
    return LocalRollout.of(up.run_dir, "digits").store.load() or RolloutState()


def counted(current: RolloutState) -> float | None:
    """The canary requests the checks counted (the error-ratio check's samples)."""
    if current.analysis is None:
        return None
    found = [c.samples for c in current.analysis.checks if c.name == "error_ratio"]
    return float(found[0]) if found and found[0] else None


class Watch:
    """Reads the rollout's state every 0.2 s, for the rollout started after the watch (not
    the one before it): the canary requests the checks counted and the ledger's count of
    them (rollout/evidence.py, summed over the replicas' series), in order."""

    def __init__(self, up: Up) -> None:
        self.up, self.since = up, time.time()
        self.counts: list[float] = []
        self.ledger: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                current = state(self.up)
            except Exception:  # a state file being replaced: read it again
                continue
            if not current.history or current.history[0].at < self.since:
                continue
            count = counted(current)
            if count is not None:
                self.counts.append(count)
            if current.baseline is not None:
                self.ledger.append(current.baseline.canary.total.requests)

    def done(self) -> Watch:
        self.stop.set()
        self.thread.join(5)
        return self


def start_controller(up: Up, tmp_path: Path, document: dict[str, object]) -> subprocess.Popen[str]:
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(document))
    quiet_in_run_dir = ["--run-dir", str(up.run_dir), "--quiet"]
    return subprocess.Popen(
        [*MODELCANARY, "rollout", "start", "-f", str(path), *quiet_in_run_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill_replica(up: Up, part: str) -> None:
    """SIGKILL a Triton replica and wait until the supervisor has it running again."""
    before = up.parts()[part]
    pid, restarts = int(str(before["pid"])), int(str(before["restarts"]))
    os.kill(pid, signal.SIGKILL)
    until(lambda: not alive(pid), 10, f"{part} survived SIGKILL")
    until(
        lambda: (
            up.parts()[part]["state"] == "running" and up.parts()[part]["restarts"] == restarts + 1
        ),
        120,
        f"{part} not restarted",
        context=up.output,
    )


@dataclass
class Rollout:
    """A rollout under load: the load's report, the controller's output, the counts."""

    report: LoadReport | None = None
    output: str = ""
    counts: list[float] = field(default_factory=list)  # the checks' canary requests
    ledger: list[float] = field(default_factory=list)  # the ledger's


@contextmanager
def rollout(
    up: Up, bodies: list[bytes], tmp_path: Path, document: dict[str, object]
) -> Iterator[Rollout]:
    """Load through the gateway, the controller on DOCUMENT and a watch of its counts;
    the block waits for what it needs; the controller's end is awaited after it."""
    found = Rollout()
    load = BackgroundLoad(up.urls["gateway"], "digits", bodies, RATE).start()
    watch = Watch(up)
    process = start_controller(up, tmp_path, document)
    try:
        until(lambda: state(up).phase == "Progressing", 90, "never progressing", context=up.output)
        until(lambda: (counted(state(up)) or 0) > 0, 60, "no canary requests counted")
        yield found
        found.output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        found.report, watched = load.stop(), watch.done()
        found.counts, found.ledger = watched.counts, watched.ledger


def never_down(run: Rollout) -> None:
    """The canary requests counted only grow, in the checks and in the ledger."""
    for counts in (run.counts, run.ledger):
        assert len(counts) > 10 and all(a <= b for a, b in pairwise(counts)), counts
    assert run.ledger[-1] >= run.counts[-1] > 0


def test_a_healthy_canary_is_promoted_while_both_replicas_are_killed(
    up: Up, digits_repo: Path, tmp_path: Path
) -> None:
    killed_during = []
    with rollout(up, request_bodies(digits_repo, "digits"), tmp_path, spec(1, 2)) as run:
        for part in ("triton-0", "triton-1"):
            kill_replica(up, part)
            killed_during.append(state(up).phase)
    assert killed_during == ["Progressing", "Progressing"], (killed_during, run.output)
    assert state(up).phase == "Promoted", run.output
    never_down(run)
    report = run.report
    assert report is not None and report.sent > 0
    failed = (report.total.errors + report.skipped) / report.sent
    print(f"user requests failed: {failed:.2%} of {report.sent}; counted {run.counts[-1]:g}")
    print("\n".join(report.first_errors))
    assert failed <= 0.02, report.table()


def test_an_erroring_canary_is_rolled_back_with_a_replica_killed(
    up: Up, digits_repo: Path, tmp_path: Path
) -> None:
    faults = Path(up.urls["faults_dir"])
    try:
        with rollout(up, request_bodies(digits_repo, "digits"), tmp_path, spec(2, 3)) as run:
            set_faults(faults, "digits", 3, FaultSpec(error_ratio=0.5))
            kill_replica(up, "triton-1")
    finally:
        set_faults(faults, "digits", 3, FaultSpec())
    final = state(up)
    assert final.phase == "RolledBack", run.output
    assert "error" in final.history[-1].reason.lower(), final.history[-1].reason
    never_down(run)
