"""What the local rollout tests (tests/stack/test_rollouts_*.py) share: the controller's
command, and reading the rollout's state, the gateway's split and the pages sent."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from modelcanary.local.controller import LocalRollout, wait_until_quiet
from modelcanary.local.stack import LocalStack
from modelcanary.rollout.state import RolloutState

MODELCANARY = str(Path(sys.executable).with_name("modelcanary"))
Start = Callable[..., subprocess.Popen[str]]


def state(stack: LocalStack) -> RolloutState:
    loaded = LocalRollout.of(Path(stack.urls["run_dir"]), "digits").store.load()
    return loaded or RolloutState()


def weights(stack: LocalStack) -> dict[str, object]:
    token = Path(stack.urls["gateway_admin_token_file"]).read_text().strip()
    reply = httpx.get(
        f"{stack.urls['gateway']}/admin/models/digits/weights",
        headers={"Authorization": f"Bearer {token}"},
    )
    view: dict[str, object] = reply.json()
    return view


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def pages(stack: LocalStack, alertname: str) -> list[dict[str, object]]:
    log = Path(stack.urls["oncall_log"])
    lines = log.read_text().splitlines() if log.exists() else []
    return [r for r in map(json.loads, lines) if r["labels"].get("alertname") == alertname]


def quiet(stack: LocalStack, version: str) -> None:
    assert wait_until_quiet(stack.urls, "digits", version, threading.Event(), timeout_s=90)


def roll_back(
    stack: LocalStack, process: subprocess.Popen[str], reason: str = "done"
) -> tuple[int, str]:
    """Roll the running rollout back by hand (`modelcanary rollback`), then wait for the
    controller's end: its exit code and output."""
    run_dir = stack.urls["run_dir"]
    subprocess.run(
        [MODELCANARY, "rollback", "--run-dir", run_dir, "--reason", reason],
        check=True,
        capture_output=True,
    )
    return finish(process)
