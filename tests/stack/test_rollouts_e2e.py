"""Rollouts end to end: the real stack (Triton, gateway, Prometheus, Alertmanager), steady
load, and the controller as a separate process (`modelcanary rollout start`).

The tests share one stack and run in order: version 2 is promoted first, and every later
rollout goes from 2 to 3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from modelcanary.load.generator import BackgroundLoad
from modelcanary.local.controller import LocalRollout, wait_until_quiet
from modelcanary.local.stack import LocalStack
from modelcanary.rollout.spec import parse_spec
from modelcanary.rollout.state import RolloutState, Transition
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome
from tests.conftest import metric_value
from tests.support.local_stack import digits_stack, steady_load
from tests.support.rollout_spec import rollout_spec
from tests.support.waits import until

pytestmark = pytest.mark.slow
MODELCANARY = str(Path(sys.executable).with_name("modelcanary"))


@pytest.fixture(scope="module")
def stack(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with digits_stack(digits_repo, tmp_path_factory.mktemp("up"), 1, (1, 2, 3, 4, 5)) as local:
        yield local


@pytest.fixture
def load(stack: LocalStack, digits_repo: Path) -> Iterator[BackgroundLoad]:
    with steady_load(stack, digits_repo) as traffic:
        yield traffic


Start = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def controller(stack: LocalStack, tmp_path: Path) -> Iterator[Start]:
    """Start `modelcanary rollout start -f` on a spec; every process is reaped after."""
    processes: list[subprocess.Popen[str]] = []

    def start(document: dict[str, object]) -> subprocess.Popen[str]:
        path = tmp_path / "canary.yaml"
        path.write_text(yaml.safe_dump(document))
        run_dir = stack.urls["run_dir"]
        process = subprocess.Popen(
            [MODELCANARY, "rollout", "start", "-f", str(path), "--run-dir", run_dir, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


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


def test_a_healthy_canary_is_promoted(
    stack: LocalStack, load: BackgroundLoad, controller: Start
) -> None:
    code, output = finish(controller(rollout_spec(1, 2)))
    assert code == 0, output
    final = state(stack)
    assert final.phase == "Promoted", output
    steps = [(t.action, t.weight) for t in final.history]
    assert steps == [("shadow", 0), ("start", 20), ("advance", 50), ("advance", 100),
                     ("promote", 100)], output  # fmt: skip
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


def test_a_canary_worse_on_labelled_data_is_rolled_back_before_any_user_request(
    stack: LocalStack, load: BackgroundLoad, controller: Start
) -> None:
    """Issue 16: version 5 (classes 3 and 8 swapped: no errors, fast, wrong on 3s and 8s)
    never serves a user: the holdout gate rolls it back before the first step."""
    code, output = finish(controller(rollout_spec(2, 5)))
    final = state(stack)
    assert code == 1 and final.phase == "RolledBack", output
    assert [(t.action, t.weight) for t in final.history] == [("rollback", 0)]
    assert "worse than stable on the holdout" in final.history[0].reason
    assert final.gate is not None and final.gate.outcome == "worse"
    metrics = f"{stack.urls['gateway']}/metrics"
    served = metric_value(metrics, "modelcanary_gateway_requests_total", version="5")
    assert served == 0 and metric_value(metrics, "modelcanary_gateway_requests_total", version="2")
    until(lambda: bool(pages(stack, "ModelCanaryRolledBack")), 30, "no rollback page")
    assert "worse than stable on the holdout" in str(pages(stack, "ModelCanaryRolledBack")[-1])


def test_a_label_bug_is_rolled_back_while_shadowing_with_no_user_request(
    stack: LocalStack, load: BackgroundLoad, controller: Start
) -> None:
    """Issue 15: version 4 (labels shifted by one: fast, no errors, always wrong), with the
    holdout gate off, is caught by comparing its answers with stable's on mirrored requests,
    and never answers a user."""
    document = rollout_spec(2, 4, analysis={"holdout": {"enabled": False}})
    code, output = finish(controller(document))
    final = state(stack)
    assert code == 1 and final.phase == "RolledBack", output
    assert [t.action for t in final.history] == ["shadow", "rollback"], output
    assert "shadow comparison: the canary agrees with stable on 0 of" in final.history[-1].reason
    metrics = f"{stack.urls['gateway']}/metrics"
    assert metric_value(metrics, "modelcanary_gateway_requests_total", version="4") == 0
    assert metric_value(metrics, "modelcanary_shadow_pairs_total", version="4") > 0
    # the comparison stops with the rollout
    token = Path(stack.urls["gateway_admin_token_file"]).read_text().strip()
    shadows = httpx.get(f"{stack.urls['gateway']}/admin/shadow",
                        headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
    assert shadows["shadow"] == {}


def test_a_canary_that_is_not_served_waits_until_the_deadline_then_rolls_back(
    stack: LocalStack, controller: Start
) -> None:
    """Issue 13 defect 4: a canary version Triton does not have sat Pending forever, shown
    as `canary_ready 1 pass`."""
    process = controller(rollout_spec(2, 7, progressDeadline="8s"))

    def pending() -> bool:
        now = state(stack)
        return now.phase == "Pending" and now.analysis is not None

    until(pending, 30, "the controller never looked at the canary")
    analysis = state(stack).analysis
    assert analysis is not None and "waiting for the canary to be ready" in analysis.reason
    ready = next(c for c in analysis.checks if c.name == "canary_ready")
    assert ready.result == "inconclusive", ready
    code, output = finish(process, 60)
    assert code == 1, output
    final = state(stack)
    assert final.phase == "RolledBack" and final.applied, output
    assert final.history[-1].reason == "the canary was not ready within progressDeadline 8s"
    assert weights(stack)["weights"] == {"1": 0, "2": 100, "3": 0, "4": 0, "5": 0}


@pytest.mark.parametrize(
    "starts",
    [timedelta(minutes=-10), timedelta(0), timedelta(days=30)],
    ids=["stale", "forged", "future"],
)
def test_a_pushed_alert_prometheus_does_not_fire_leaves_the_rollout_alone(
    stack: LocalStack, load: BackgroundLoad, controller: Start, starts: timedelta
) -> None:
    """Issue 13 defect 5 (stale): an Alertmanager that stalled never sent the resolution of
    an alert Prometheus had long resolved, and a new rollout was rolled back on its first
    tick. Issue 25 probe 3b (forged, future): an alert posted by anyone reached the
    controller and rolled a healthy canary back within a second; one dated in the future
    rolled back every later rollout of the version. Only what Prometheus fires counts."""
    quiet(stack, "3")
    pushed = {
        "status": "firing", "startsAt": "", "endsAt": "0001-01-01T00:00:00Z",
        "labels": {"alertname": "ModelVersionHighErrorRatio", "severity": "critical",
                   "model": "digits", "version": "3", "source": "gateway"},
        "annotations": {}, "fingerprint": "pushed-digits-3",
    }  # fmt: skip
    posted = started = datetime.now(UTC)
    try:
        process = controller(rollout_spec(2, 3))

        def begun() -> bool:  # this rollout, not the last one (or none yet)
            now = state(stack)
            created = now.created_at or 0.0
            return created >= started.timestamp() and now.phase not in ("Pending", "RolledBack")

        until(begun, 60, "the rollout never started")
        posted = datetime.now(UTC)
        notify(stack, {**pushed, "startsAt": (posted + starts).isoformat()})

        def looked_again() -> bool:  # a tick since the push (or the rollout ended)
            now = state(stack)
            ticked = now.analysis is not None and now.analysis.at > posted.timestamp() + 1
            return ticked or now.phase == "RolledBack"

        until(looked_again, 30, "the controller never ticked after the alert")
        after = state(stack)
        assert after.phase in ("Shadowing", "Progressing"), after.history[-1].reason
        assert after.analysis is not None and after.analysis.alerts == ()
        run_dir = stack.urls["run_dir"]
        subprocess.run([MODELCANARY, "rollback", "--run-dir", run_dir, "--reason", "done"],
                       check=True, capture_output=True)  # fmt: skip
        code, output = finish(process)
    finally:
        notify(stack, {**pushed, "status": "resolved", "startsAt": posted.isoformat()})
    assert code == 1 and state(stack).history[-1].reason.endswith("done"), output
    assert "ModelVersionHighErrorRatio" not in output


def notify(stack: LocalStack, alert: dict[str, object]) -> None:
    """Post to the controller's webhook as Alertmanager does."""
    token = Path(stack.urls["run_dir"], "controller.token").read_text().strip()
    body = {"version": "4", "status": alert["status"], "receiver": "controller",
            "groupKey": "{}:{}", "alerts": [alert]}  # fmt: skip
    reply = httpx.post(
        stack.urls["controller_webhook"], json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 200, reply.text


def fault_once_progressing(stack: LocalStack, fault: FaultSpec) -> None:
    """Inject the fault into version 3 once the canary takes traffic."""
    until(lambda: state(stack).phase == "Progressing", 60, "the canary never started")
    set_faults(Path(stack.urls["faults_dir"]), "digits", 3, fault)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (FaultSpec(error_ratio=0.5), "error"),
        (FaultSpec(latency_ms=400), "latency"),
    ],
    ids=["errors", "latency"],
)
def test_a_bad_canary_is_rolled_back(
    stack: LocalStack, load: BackgroundLoad, controller: Start, fault: FaultSpec, reason: str
) -> None:
    quiet(stack, "3")
    paged = len(pages(stack, "ModelCanaryRolledBack"))
    process = controller(rollout_spec(2, 3))
    try:
        fault_once_progressing(stack, fault)
        until(lambda: state(stack).phase == "RolledBack", 60, "never rolled back")
        code, output = finish(process)
    finally:
        set_faults(Path(stack.urls["faults_dir"]), "digits", 3, FaultSpec())
    assert code == 1, output
    final = state(stack)
    assert final.weight == 0 and weights(stack)["weights"] == {
        "1": 0,
        "2": 100,
        "3": 0,
        "4": 0,
        "5": 0,
    }
    last = final.history[-1]
    assert last.action == "rollback" and reason in last.reason.lower(), last.reason
    assert max(t.weight for t in final.history) == 20  # never went past the first step
    # every rollback pages, the second of the same version too (issue 13 defect 3)
    until(lambda: len(pages(stack, "ModelCanaryRolledBack")) > paged, 30, "on-call was not paged")
    page = pages(stack, "ModelCanaryRolledBack")[-1]
    assert page["channel"] == "oncall" and page["labels"]["version"] == "3"  # type: ignore[index]
    assert page["annotations"]["reason"] == last.reason  # type: ignore[index]


def test_a_canary_without_traffic_is_paused_never_promoted(
    stack: LocalStack, controller: Start
) -> None:
    quiet(stack, "3")
    process = controller(rollout_spec(2, 3))
    until(lambda: state(stack).phase == "Paused", 60, "not paused without data")
    paused_at = state(stack).history[-1].at
    until(lambda: (checked := state(stack).analysis) is not None and checked.at > paused_at + 3,
          30, "the controller stopped checking")  # fmt: skip
    paused = state(stack)
    assert paused.phase == "Paused" and paused.weight == 20
    assert "no data for more than 5s" in paused.history[-1].reason
    run_dir = stack.urls["run_dir"]
    rejected = subprocess.run(
        [MODELCANARY, "resume", "--run-dir", run_dir, "--reason", "x"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert rejected.returncode == 0  # resume is allowed while paused
    until(lambda: state(stack).history[-1].action == "resume", 30, "resume not acted on")
    until(lambda: state(stack).phase == "Paused", 30, "not paused again without data")
    subprocess.run(
        [MODELCANARY, "rollback", "--run-dir", run_dir, "--reason", "no traffic to judge"],
        check=True, capture_output=True,
    )  # fmt: skip
    code, output = finish(process)
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
    """The stable version now (1 alone, 3 after the tests above), a canary the holdout gate
    passes against it (2 or 3: 1 is six points less accurate), and a third version."""
    stable = str(weights(stack)["stable"])
    good = "2" if stable != "2" else "3"
    spare = next(v for v in ("1", "2", "3") if v not in (stable, good))
    return stable, good, spare


def shadowing_long(stable: str, canary: str) -> dict[str, object]:
    """A rollout that stays Shadowing (no load, far more pairs wanted than come)."""
    return rollout_spec(int(stable), int(canary),
                shadow={"percent": 100, "minSamples": 100000, "maxDuration": "10m"})  # fmt: skip


def roll_back(stack: LocalStack, process: subprocess.Popen[str]) -> tuple[int, str]:
    run_dir = stack.urls["run_dir"]
    subprocess.run([MODELCANARY, "rollback", "--run-dir", run_dir, "--reason", "done"],
                   check=True, capture_output=True)  # fmt: skip
    return finish(process)


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
    status = subprocess.run([MODELCANARY, "status", "--run-dir", run_dir],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert status.returncode == 2 and "phase: must be 'Pending'" in status.stderr
    assert "Traceback" not in status.stderr
    repaired = subprocess.run([MODELCANARY, "rollout", "repair", "--run-dir", run_dir],
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert repaired.returncode == 0, repaired.stderr
    assert f"now sends all traffic of digits to {stable}" in repaired.stdout
    assert canary_weight(stack, canary) == 0
    final = state(stack)
    assert (final.phase, final.weight, final.applied) == ("RolledBack", 0, True)
    assert final.history[0] == started and final.history[-1].action == "rollback"
