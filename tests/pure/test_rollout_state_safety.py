"""Issue 25: the local controller fails safe. A state it cannot write does not end it, a
state that is not one is refused naming the field, and the router's real split is read
back before the first tick."""

from __future__ import annotations

import errno
import json
from dataclasses import replace
from pathlib import Path

import pytest

from modelcanary.adapters import file_store
from modelcanary.adapters.file_store import FileStateStore
from modelcanary.rollout.engine import Engine, Rollout
from modelcanary.rollout.ports import FiringAlert, Observations, Split, VersionStats
from modelcanary.rollout.reconcile import split_mismatch, wanted_split
from modelcanary.rollout.state import (
    RolloutState,
    StateError,
    Transition,
    parse_state,
    parse_transition,
)
from tests.pure.test_rollout_engine import SPEC, Clock, Notifier, Router, Source, golden_ok


class FullDisk:
    """write_atomically on a full disk: the temporary file cannot be written, and the
    system names no file."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, path: Path, text: str) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    writer = FullDisk()
    monkeypatch.setattr(file_store, "write_atomically", writer)
    return writer


def test_a_full_disk_holds_the_step_rolls_back_anyway_and_is_written_once_it_can_be(
    tmp_path: Path, disk: FullDisk
) -> None:
    """Finding 6: a failed write ended the controller with exit 1 (the code for rolled
    back), the canary left at 10% with no one watching, and the message named no file."""
    store, router, clock = FileStateStore(tmp_path, len(SPEC.steps)), Router(), Clock()
    rollout, source = Rollout("digits", SPEC, store, router, golden_ok), Source()
    Engine(source, Notifier(), clock=clock).tick([rollout])  # step 1: 10%
    disk.full = True
    clock.now += 11  # the interval passed: healthy, it would advance to 50%
    engine = Engine(source, Notifier(), clock=clock)  # a restarted controller
    held = engine.tick([rollout])[0]
    written = f"state: cannot write {store.state_path}: No space left on device"
    assert held.problems[-2:] == (written, "holding at 10% until it is written")
    assert router.calls == [(10, False), (10, False)]  # re-applied once, never 50%
    assert held.state.weight == 10 and store.load() == held.state

    alert = FiringAlert("ModelVersionHighErrorRatio", "critical", "2")
    # Prometheus fires it too (a real alert), on enough canary requests to be evidence
    busy = Observations(VersionStats(20_000, 0, 0.01), VersionStats(2000, 0, 0.01))
    source.seen = replace(busy, alerts=(alert,))
    alerted = Engine(source, Notifier(), pushed=lambda model: [alert], clock=clock)
    rolled = alerted.tick([rollout])[0]
    assert rolled.state.phase == "RolledBack" and router.calls[-1] == (0, False)
    assert written in rolled.problems
    on_disk = json.loads(store.state_path.read_text())
    assert (on_disk["phase"], on_disk["weight"]) == ("Progressing", 10)
    assert store.load() == rolled.state  # the controller goes on from the rollback

    disk.full = False
    after = alerted.tick([rollout])[0]
    assert after.problems == () and store.unsaved is None
    saved = FileStateStore(tmp_path).load()
    assert saved is not None and (saved.phase, saved.weight, saved.applied) == (
        "RolledBack",
        0,
        True,
    )


def test_the_schema_reads_every_field_the_engine_writes_and_ignores_unknown_ones() -> None:
    """New optional fields need nothing but a default in the dataclass; a field this
    version does not know (a newer controller's) is ignored."""
    state = RolloutState(
        phase="Progressing",
        step=1,
        weight=50,
        history=(
            Transition(1.0, "start", "Progressing", 0, 10, "ok", {"p": 0.5, "n": 3, "s": "x"}),
        ),
    )
    assert parse_state({**state.to_json(), "from_a_newer_version": [1]}, steps=3) == state
    assert parse_state({}) == RolloutState()


STATE_ERRORS = [
    ({"applied": "yes"}, 'applied: must be a valid boolean, got "yes"'),
    ({"step": "3"}, 'step: must be a valid integer, got "3"'),
    ({"step": -2}, "step: must be an integer of at least -1, got -2"),
    ({"phase": "RolledBack", "weight": 20}, "weight: a RolledBack rollout has weight 0, got 20"),
    (
        {"phase": "Promoted", "step": 2, "weight": 50},
        "weight: a Promoted rollout has weight 100, got 50",
    ),
    ({"history": [{"at": 1.0}]}, "history.0.action: missing"),
    ({"history": "lots"}, 'history: must be a valid array, got "lots"'),
]


@pytest.mark.parametrize(("data", "message"), STATE_ERRORS)
def test_state_errors_are_one_line_naming_the_field(data: object, message: str) -> None:
    with pytest.raises(StateError) as refused:
        parse_state(data)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_history_entry_reads_alone() -> None:
    entry = Transition(1.0, "advance", "Progressing", 1, 50, "checks passed")
    assert parse_transition(json.loads(json.dumps(entry.__dict__))) == entry
    with pytest.raises(StateError, match=r"^weight: must be a valid integer"):
        parse_transition({**entry.__dict__, "weight": "half"})


def test_the_split_a_state_stands_for() -> None:
    assert wanted_split(SPEC, None) == Split({"1": 100}, "1")
    progressing = RolloutState(phase="Progressing", step=1, weight=50)
    assert wanted_split(SPEC, progressing) == Split({"1": 50, "2": 50}, "1")
    promoted = RolloutState(phase="Promoted", step=2, weight=100)
    assert wanted_split(SPEC, promoted) == Split({"1": 0, "2": 100}, "2")


def test_a_gateway_left_at_90_10_without_a_state_is_a_mismatch() -> None:
    """Finding 8: with the gateway left at 90/10 and the state deleted, a new rollout read
    "Shadowing 0%" while 10% of the users reached the canary."""
    left = Split({"2": 10, "1": 90, "3": 0}, "1")
    assert split_mismatch(SPEC, None, left) == (
        "the gateway splits digits 90% to 1, 10% to 2 (stable 1) but no rollout state "
        "stands for 100% to 1 (stable 1)"
    )
    shadowing = RolloutState(phase="Shadowing")
    assert "the Shadowing rollout at 0%" in str(split_mismatch(SPEC, shadowing, left))
    other = Split({"1": 95, "3": 5}, "1")  # an older canary still served
    assert "5% to 3" in str(split_mismatch(SPEC, None, other))


def test_a_split_that_agrees_is_left_alone() -> None:
    assert split_mismatch(SPEC, None, Split({"1": 100, "2": 0, "3": 0}, "1")) is None
    at_50 = RolloutState(phase="Paused", step=1, weight=50)
    assert split_mismatch(SPEC, at_50, Split({"1": 50, "2": 50}, "1")) is None
    promoted = RolloutState(phase="Promoted", step=2, weight=100)
    assert split_mismatch(SPEC, promoted, Split({"1": 0, "2": 100}, "1")) is not None
    assert split_mismatch(SPEC, replace(promoted), Split({"1": 0, "2": 100}, "2")) is None
