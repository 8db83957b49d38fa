"""The local rollout commands and views on rollout files (no stack needed)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelcanary.errors import UsageError
from modelcanary.local.controller import LocalRollout
from modelcanary.rollout.intents import refusal
from modelcanary.rollout.judge import Check
from modelcanary.rollout.ports import FiringAlert
from modelcanary.rollout.spec import parse_spec
from modelcanary.rollout.state import LastAnalysis, RolloutState, Transition
from modelcanary.rollout.view import render_status, status_document
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
T0 = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC
VERSIONS = {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}}
TIMING = {"steps": [10, 50, 100], "interval": "30s", "analysis": {"failureLimit": 2}}
SPEC = parse_spec({**VERSIONS, **TIMING}, "test")
STATE = RolloutState(
    phase="Progressing",
    step=1,
    weight=50,
    started_at=T0 - 60,
    step_started_at=T0 - 12,
    failures=1,
    history=(
        Transition(T0 - 60, "start", "Progressing", 0, 10, "golden samples match"),
        Transition(
            T0 - 40,
            "hold",
            "Progressing",
            0,
            10,
            "check failed (1 of 2 tolerated)",
            {"error_ratio": 0.0125},
        ),
        Transition(
            T0 - 12, "advance", "Progressing", 1, 50, "step 2 now requested by ana", by="ana"
        ),
    ),
    analysis=LastAnalysis(
        T0 - 1,
        "inconclusive",
        (
            Check("error_ratio", 0.002, 0.01, 140, "pass", "", 0.031, 400),
            Check("latency_p99_s", None, 0.5, 80, "inconclusive", "no canary requests yet"),
        ),
        (FiringAlert("ModelVersionTrafficBelowShare", "warning", "2", "pending"),),
        "waiting: no canary requests yet",
    ),
)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_status_shows_phase_step_checks_alerts_time_left_and_history() -> None:
    assert render_status("digits", SPEC, STATE, T0) == "\n".join(
        [
            "rollout digits: digits version 1 -> 2",
            "  phase     Progressing",
            "  step      2/3 (50%)",
            "  weight    50% to canary 2",
            "  failures  1 of 2 tolerated",
            "  step ends in 18s; 100% at the earliest in 18s",
            "  checks as of 1s ago: inconclusive: waiting: no canary requests yet",
            "",
            "  check          value  threshold  samples  evidence      result        detail",
            "  error_ratio    0.002  0.01       140      0.031 of 400  pass",
            "  latency_p99_s  -      0.5        80       -             inconclusive  no canary requests yet",
            "",
            "  alerts for the canary:",
            "    ModelVersionTrafficBelowShare (warning, pending)",
            "",
            "  history:",
            "    time      action   phase        step  weight  by          reason",
            "    11:05:40  start    Progressing  1/3   10%     controller  golden samples match",
            "    11:06:00  hold     Progressing  1/3   10%     controller  check failed (1 of 2 tolerated) [error_ratio=0.0125]",
            "    11:06:28  advance  Progressing  2/3   50%     ana         step 2 now requested by ana",
        ]
    )


def test_status_document_for_scripts() -> None:
    document = status_document("digits", SPEC, STATE, T0)
    assert document["phase"] == "Progressing" and document["step"] == 2
    assert document["step_time_left_s"] == 18.0 and document["earliest_full_traffic_s"] == 18.0
    assert document["checks"][1] == {
        "name": "latency_p99_s",
        "value": None,
        "threshold": 0.5,
        "samples": 80,
        "result": "inconclusive",
        "detail": "no canary requests yet",
        "evidence": None,
        "evidence_limit": None,
        "ruled_out": None,
    }
    assert [t["by"] for t in document["history"]] == ["controller", "controller", "ana"]
    json.dumps(document)


def test_refusals_say_what_is_allowed() -> None:
    assert refusal("promote", "Progressing") is None
    assert refusal("resume", "Progressing") == (
        "cannot resume: the rollout is Progressing; resume needs Paused; "
        "allowed now: promote, promote --full, rollback, pause"
    )
    assert refusal("rollback", "Promoted") == (
        "cannot rollback: the rollout is Promoted; rollback needs Pending or Shadowing or Progressing or Paused"
    )


def saved(run_dir: Path, state: RolloutState = STATE) -> LocalRollout:
    rollout = LocalRollout.of(run_dir, "digits")
    rollout.begin(SPEC)
    rollout.store.save(state)
    return rollout


def test_local_commands_on_rollout_files(cli: Cli, tmp_path: Path) -> None:
    rollout = saved(tmp_path)
    status = cli("status", "--run-dir", tmp_path)
    assert status.code == 0 and "phase     Progressing" in status.out
    as_json = cli("status", "--run-dir", tmp_path, "-o", "json")
    assert json.loads(as_json.out)["weight"] == 50
    assert "step 2 now requested by ana" in cli("history", "--run-dir", tmp_path).out

    promoted = cli("promote", "--full", "--run-dir", tmp_path, "--reason", "looks great")
    assert promoted.code == 0 and "promote --full recorded" in promoted.out
    intent = rollout.store.read_intent()
    assert intent is not None and (intent.action, intent.reason) == ("promote_full", "looks great")
    assert intent.id

    refused = cli("resume", "digits", "--run-dir", tmp_path)
    assert refused.code == 1 and "cannot resume: the rollout is Progressing" in refused.err
    assert cli("rollback", "--run-dir", tmp_path).code == 2  # --reason is required
    missing = cli("status", "cats", "--run-dir", tmp_path)
    assert missing.code == 1 and "no rollout 'cats'" in missing.err
    empty = cli("pause", "--run-dir", tmp_path / "nowhere")
    assert empty.code == 1 and "no rollouts in" in empty.err


def test_rollout_start_needs_a_stack_and_a_valid_spec(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text("model: digits\nstable: {version: 1}\ncanary: {version: 2}\n")
    no_stack = cli("rollout", "start", "-f", spec, "--run-dir", tmp_path)
    assert no_stack.code == 2 and "start one with `modelcanary up" in no_stack.err
    spec.write_text("model: digits\nstable: {version: 1}\ncanary: {version: 1}\nsteps: [50, 20]\n")
    bad = cli("rollout", "start", "-f", spec, "--run-dir", tmp_path)
    assert bad.code == 2
    assert "steps: steps must increase, got [50, 20]" in bad.err
    assert cli("rollout", "start", "-f", tmp_path / "none.yaml").code == 2


def test_begin_resumes_refuses_or_archives(tmp_path: Path) -> None:
    rollout = saved(tmp_path)
    assert rollout.begin(SPEC).startswith("resuming at step 2")
    other = SPEC.model_copy(update={"canary": SPEC.canary.model_copy(update={"version": "3"})})
    with pytest.raises(UsageError, match=r"a rollout of digits 1 -> 2 is Progressing"):
        rollout.begin(other)
    rollout.store.save(RolloutState(phase="RolledBack", started_at=T0))
    assert rollout.begin(other) == "starting: digits 1 -> 3"
    assert rollout.store.load() is None and rollout.spec().canary.version == "3"
    assert [p.name for p in (rollout.directory / "finished").iterdir()] == [
        "20261118T110640-1-to-2.json"
    ]


@pytest.mark.parametrize(
    ("written", "named"),
    [
        ("[]", "the state: must be an object, got []"),
        ('{"step": "x"}', 'step: must be a valid integer, got "x"'),
        ('{"phase": "Bogus"}', "phase: must be 'Pending'"),
    ],
)
def test_a_corrupt_state_is_one_line_in_status_history_rollback_and_start(
    cli: Cli, tmp_path: Path, written: str, named: str
) -> None:
    """Issue 25 finding 7: `[]` and a step "x" gave tracebacks in start, status and rollback."""
    rollout = saved(tmp_path)
    rollout.store.state_path.write_text(written)
    up = {
        "model": "digits",
        "gateway": "http://127.0.0.1:9",
        "repo": str(tmp_path),
        "gateway_admin_token_file": str(tmp_path / "token"),
        "run_dir": str(tmp_path),
        "controller_webhook": "http://127.0.0.1:9/alertmanager/webhook",
        "prometheus": "http://127.0.0.1:9",
        "alertmanager": "http://127.0.0.1:9",
        "alertmanager_password_file": str(tmp_path / "alertmanager.password"),
    }
    (tmp_path / "up.json").write_text(json.dumps(up))
    (tmp_path / "token").write_text("t0k\n")
    (tmp_path / "controller.token").write_text("t0k\n")
    (tmp_path / "alertmanager.password").write_text("pa55\n")
    spec = tmp_path / "canary.yaml"
    spec.write_text(json.dumps(SPEC.model_dump(mode="json", by_alias=True)))
    for args in (
        ("status",),
        ("history",),
        ("rollback", "--reason", "bad"),
        ("rollout", "start", "-f", spec),
    ):
        refused = cli(*args, "--run-dir", tmp_path)
        assert refused.code == 2, (args, refused.err)
        assert f"{rollout.store.state_path}: {named}" in refused.err
        assert "rollout repair" in refused.err and len(refused.err.splitlines()) == 1
    assert rollout.store.state_path.read_text() == written  # nothing changed
    assert rollout.store.read_intent() is None


def test_repair_keeps_the_history_that_reads_and_rolls_back(cli: Cli, tmp_path: Path) -> None:
    """Issue 25 finding 7: a corrupt state could only be fixed by deleting it."""
    rollout = saved(tmp_path)
    corrupt = {**STATE.to_json(), "step": 99}
    corrupt["history"] = [*corrupt["history"], {"at": "noon"}]
    written = json.dumps(corrupt)
    rollout.store.state_path.write_text(written)
    repaired = cli("rollout", "repair", "--run-dir", tmp_path)
    assert repaired.code == 0, repaired.err
    lines = repaired.out.splitlines()
    assert lines[0].startswith(
        f'{rollout.store.state_path}: history.3.at: must be a valid number, got "noon"'
    )
    assert "wrote a RolledBack state at 0% with 3 of 4 history entries" in lines[1]
    assert "the gateway was not changed (UsageError: no local stack" in lines[2]
    aside = [p for p in rollout.directory.iterdir() if p.name.startswith("state.json.unread")]
    assert len(aside) == 1 and aside[0].read_text() == written
    state = rollout.load()
    assert state is not None
    assert (state.phase, state.weight, state.applied) == ("RolledBack", 0, False)
    assert state.history[:3] == STATE.history and state.history[3].action == "rollback"
    assert 'history.3.at: must be a valid number, got "noon"' in state.history[3].reason
    assert cli("status", "--run-dir", tmp_path).code == 0
    assert "retry recorded" in cli("retry", "--run-dir", tmp_path).out
    again = cli("rollout", "repair", "--run-dir", tmp_path)
    assert again.code == 0 and "a valid RolledBack state; nothing to repair" in again.out
