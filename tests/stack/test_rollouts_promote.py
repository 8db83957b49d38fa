"""Rollouts end to end, promotions and pauses: the real stack (Triton, gateway, Prometheus,
Alertmanager), steady load, and the controller as a separate process (`modelcanary rollout
start`).

The tests share one stack and run in order: version 2 is promoted from 1 first, and every
later rollout goes from 2 to 3."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from modelcanary.load.generator import BackgroundLoad
from modelcanary.local.stack import LocalStack
from tests.support.local_rollouts import (
    MODELCANARY,
    Start,
    finish,
    pages,
    quiet,
    roll_back,
    state,
    weights,
)
from tests.support.rollout_spec import rollout_spec
from tests.support.waits import until

pytestmark = pytest.mark.slow
STABLE = 1  # the stack's stable version as it starts: version 2 is promoted from it first


def test_a_healthy_canary_is_promoted(
    stack: LocalStack, load: BackgroundLoad, controller: Start
) -> None:
    code, output = finish(controller(rollout_spec(1, 2)))
    assert code == 0, output
    final = state(stack)
    assert final.phase == "Promoted", output
    steps = [(t.action, t.weight) for t in final.history]
    assert steps == [
        ("shadow", 0),
        ("start", 20),
        ("advance", 50),
        ("advance", 100),
        ("promote", 100),
    ], output
    # the holdout gate ran before the shadow comparison, and its numbers are in the history
    start = final.history[0]
    assert "holdout not worse: accuracy of 'logits' on 360 labelled samples" in start.reason
    assert "shadow comparison: the canary agrees with stable on" in final.history[1].reason
    assert float(start.numbers["holdout_canary"]) > float(start.numbers["holdout_stable"])
    assert final.gate is not None and final.gate.outcome == "not worse"
    assert weights(stack)["weights"] == {"1": 0, "2": 100, "3": 0, "4": 0, "5": 0}
    assert weights(stack)["stable"] == "2"
    until(lambda: bool(pages(stack, "ModelCanaryPromoted")), 30, "no promotion notice")
    notice = pages(stack, "ModelCanaryPromoted")[0]
    assert notice["channel"] == "chat"
    assert "all checks passed" in str(notice["annotations"])


def test_a_canary_without_traffic_is_paused_never_promoted(
    stack: LocalStack, controller: Start
) -> None:
    quiet(stack, "3")
    process = controller(rollout_spec(2, 3))
    until(lambda: state(stack).phase == "Paused", 60, "not paused without data")
    paused_at = state(stack).history[-1].at
    until(
        lambda: (checked := state(stack).analysis) is not None and checked.at > paused_at + 3,
        30,
        "the controller stopped checking",
    )
    paused = state(stack)
    assert paused.phase == "Paused" and paused.weight == 20
    assert "no data for more than 5s" in paused.history[-1].reason
    run_dir = stack.urls["run_dir"]
    rejected = subprocess.run(
        [MODELCANARY, "resume", "--run-dir", run_dir, "--reason", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rejected.returncode == 0  # resume is allowed while paused
    until(lambda: state(stack).history[-1].action == "resume", 30, "resume not acted on")
    until(lambda: state(stack).phase == "Paused", 30, "not paused again without data")
    code, output = roll_back(stack, process, "no traffic to judge")
    assert code == 1, output
    final = state(stack)
    assert final.phase == "RolledBack" and "Promoted" not in {t.phase for t in final.history}
    assert final.history[-1].reason.endswith("no traffic to judge")
    not_allowed = subprocess.run(
        [MODELCANARY, "pause", "--run-dir", run_dir], capture_output=True, text=True, check=False
    )
    assert not_allowed.returncode == 1
    assert "cannot pause: the rollout is RolledBack" in not_allowed.stderr
    assert "allowed now: retry" in not_allowed.stderr


def test_a_killed_controller_resumes_from_the_persisted_step(
    stack: LocalStack, load: BackgroundLoad, controller: Start
) -> None:
    quiet(stack, "3")
    document = rollout_spec(2, 3, steps=[10, 30, 60, 100])
    document["interval"] = "8s"  # time to kill it at step 2, however loaded the machine
    first = controller(document)
    until(lambda: state(stack).step >= 1, 60, "never reached step 2")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    killed_at = state(stack)
    assert killed_at.phase == "Progressing"
    code, output = finish(controller(document))
    assert code == 0, output
    assert f"resuming at step {killed_at.step + 1}" in output
    final = state(stack)
    moves = [t.step for t in final.history if t.action in ("start", "advance")]
    assert moves == [0, 1, 2, 3], moves  # each step once: none skipped, none repeated
    assert final.phase == "Promoted" and weights(stack)["stable"] == "3"
