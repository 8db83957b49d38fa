"""Rollouts end to end, recovery from what a crash or a hand leaves behind (a gateway split
with no state, a rollback never applied, a state that cannot be written or read): the real
stack, and the controller as a separate process (`modelcanary rollout start`).

The tests share one stack, stable at version 3 (as after a promotion of 3)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from modelcanary.load.generator import BackgroundLoad
from modelcanary.local.controller import LocalRollout
from modelcanary.local.stack import LocalStack
from modelcanary.rollout.spec import parse_spec
from modelcanary.rollout.state import RolloutState, Transition
from modelcanary.serving.faults import FaultSpec, set_faults
from tests.support.local_rollouts import (
    MODELCANARY,
    Start,
    finish,
    quiet,
    roll_back,
    state,
    weights,
)
from tests.support.rollout_spec import rollout_spec
from tests.support.waits import until

pytestmark = pytest.mark.slow
STABLE = 3  # the stack's stable version as it starts: as after a promotion of 3


def set_weights(stack: LocalStack, split: dict[str, int], stable: str) -> None:
    token = Path(stack.urls["gateway_admin_token_file"]).read_text().strip()
    reply = httpx.put(
        f"{stack.urls['gateway']}/admin/models/digits/weights",
        json={"weights": split, "stable": stable},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 200, reply.text


def canary_weight(stack: LocalStack, canary: str) -> object:
    split = weights(stack)["weights"]
    return split.get(canary) if isinstance(split, dict) else None


def versions(stack: LocalStack) -> tuple[str, str, str]:
    """The stable version now (3, as this module's stack starts), a canary the holdout gate
    passes against it (2 or 3: 1 is six points less accurate), and a third version."""
    stable = str(weights(stack)["stable"])
    good = "2" if stable != "2" else "3"
    spare = next(v for v in ("1", "2", "3") if v not in (stable, good))
    return stable, good, spare


def shadowing_long(stable: str, canary: str) -> dict[str, object]:
    """A rollout that stays Shadowing (no load, far more pairs wanted than come)."""
    return rollout_spec(
        int(stable),
        int(canary),
        shadow={"percent": 100, "minSamples": 100000, "maxDuration": "10m"},
    )


def test_a_gateway_left_at_90_10_without_a_state_is_set_to_stable_before_the_first_tick(
    stack: LocalStack, controller: Start
) -> None:
    """Issue 25 finding 8: with the gateway left at 90/10 and the state deleted, a new
    rollout read "Shadowing 0%" while 10% of the users reached the canary."""
    stable, canary, _ = versions(stack)
    quiet(stack, canary)
    rollout = LocalRollout.of(Path(stack.urls["run_dir"]), "digits")
    rollout.store.state_path.unlink(missing_ok=True)
    set_weights(stack, {stable: 90, canary: 10}, stable)
    process = controller(shadowing_long(stable, canary))
    until(rollout.store.state_path.exists, 60, "the controller never wrote a state")
    split = weights(stack)["weights"]
    assert isinstance(split, dict) and (split[stable], split[canary]) == (100, 0)
    until(lambda: state(stack).phase == "Shadowing", 60, "never shadowed")
    split = weights(stack)["weights"]
    assert isinstance(split, dict) and (split[stable], split[canary]) == (100, 0)
    code, output = roll_back(stack, process)
    assert code == 1, output
    assert (
        f"the gateway splits digits 90% to {stable}, 10% to {canary} (stable {stable}) but no "
        f"rollout state stands for 100% to {stable} (stable {stable}): set the split to "
        f"100% to {stable} (stable {stable}) first"
    ) in output


def test_a_rollback_recorded_but_never_applied_is_applied_before_it_is_archived(
    stack: LocalStack, controller: Start
) -> None:
    """Issue 25 finding 8: a RolledBack state with `applied: false` (a controller killed
    between recording the rollback and routing it) was archived by the next start, its
    canary left with 10% of the users."""
    stable, other, canary = versions(stack)  # the new rollout's canary passes the gate
    quiet(stack, other)
    rollout = LocalRollout.of(Path(stack.urls["run_dir"]), "digits")
    rollout.store.state_path.unlink(missing_ok=True)
    rollout.begin(parse_spec(rollout_spec(int(stable), int(canary)), "killed"))
    began = datetime(2001, 1, 1, tzinfo=UTC).timestamp()
    killed = Transition(began, "rollback", "RolledBack", 0, 0, "errors")
    rollout.store.save(RolloutState("RolledBack", 0, 0, began, applied=False, history=(killed,)))
    set_weights(stack, {stable: 90, canary: 10}, stable)
    process = controller(shadowing_long(stable, other))

    def begun() -> bool:  # the new rollout's first state, not the one written above
        return rollout.spec().canary.version == other and rollout.store.state_path.exists()

    until(begun, 60, "the new rollout never wrote a state")
    archived = rollout.directory / "finished" / f"20010101T000000-{stable}-to-{canary}.json"
    assert json.loads(archived.read_text())["applied"] is True
    split = weights(stack)["weights"]
    assert isinstance(split, dict) and (split[stable], split[canary], split[other]) == (100, 0, 0)
    code, output = roll_back(stack, process)
    assert code == 1, output
    assert (
        f"the RolledBack rollout of digits {stable} -> {canary} was not applied; applied it "
        f"first: 100% to {stable} (stable {stable})"
    ) in output
    assert output.index("was not applied") < output.index(f"starting: digits {stable} -> {other}")


def test_a_state_that_cannot_be_written_keeps_the_controller_watching_and_rolling_back(
    stack: LocalStack, load: BackgroundLoad, controller: Start
) -> None:
    """Issue 25 finding 6: a failed state write ended the controller with exit 1 (the code
    for rolled back), the canary left at its weight with no one watching. Here the
    rollout's directory is made immutable (`chattr +i`) at the first step, and then the
    canary fails every request: real evidence, which Prometheus and the judge both see."""
    stable, canary, _ = versions(stack)
    quiet(stack, canary)
    rollout = LocalRollout.of(Path(stack.urls["run_dir"]), "digits")
    document = rollout_spec(int(stable), int(canary), interval="10m", shadow={"enabled": False})
    process = controller(document)

    def first_step() -> bool:  # of this rollout, not an earlier one's
        if not (rollout.directory / "spec.json").exists():
            return False
        return rollout.spec().canary.version == canary and state(stack).weight == 20

    until(first_step, 90, "the canary never got its first step")
    subprocess.run(["chattr", "+i", str(rollout.directory)], check=True)
    faults = Path(stack.urls["faults_dir"])
    try:
        set_faults(faults, "digits", int(canary), FaultSpec(error_ratio=1.0))
        until(lambda: canary_weight(stack, canary) == 0, 60, "not rolled back")
        assert process.poll() is None  # still running: the rollback is not written yet
        assert (state(stack).phase, state(stack).weight) == ("Progressing", 20)  # on disk
    finally:
        subprocess.run(["chattr", "-i", str(rollout.directory)], check=True)
        set_faults(faults, "digits", int(canary), FaultSpec())
    code, output = finish(process)
    assert code == 1, output
    written = f"! state: cannot write {rollout.store.state_path}: Operation not permitted"
    assert written in output
    final = state(stack)
    assert (final.phase, final.weight, final.applied) == ("RolledBack", 0, True), output


def test_repair_rolls_an_unreadable_state_back_and_sends_traffic_to_stable(
    stack: LocalStack,
) -> None:
    """Issue 25 finding 7: a corrupt state could only be fixed by deleting it (losing the
    history), and `status` showed a traceback."""
    stable, canary, _ = versions(stack)
    rollout = LocalRollout.of(Path(stack.urls["run_dir"]), "digits")
    rollout.store.state_path.unlink(missing_ok=True)
    rollout.begin(parse_spec(rollout_spec(int(stable), int(canary)), "corrupt"))
    began = datetime.now(UTC).timestamp()
    started = Transition(began, "start", "Progressing", 0, 20, "checks passed")
    good = RolloutState("Progressing", 0, 20, began, history=(started,)).to_json()
    rollout.store.state_path.write_text(json.dumps({**good, "phase": "Bogus"}))
    set_weights(stack, {stable: 80, canary: 20}, stable)
    run_dir = stack.urls["run_dir"]
    status = subprocess.run(
        [MODELCANARY, "status", "--run-dir", run_dir], capture_output=True, text=True, check=False
    )
    assert status.returncode == 2 and "phase: must be 'Pending'" in status.stderr
    assert "Traceback" not in status.stderr
    repaired = subprocess.run(
        [MODELCANARY, "rollout", "repair", "--run-dir", run_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    assert repaired.returncode == 0, repaired.stderr
    assert f"now sends all traffic of digits to {stable}" in repaired.stdout
    assert canary_weight(stack, canary) == 0
    final = state(stack)
    assert (final.phase, final.weight, final.applied) == ("RolledBack", 0, True)
    assert final.history[0] == started and final.history[-1].action == "rollback"
