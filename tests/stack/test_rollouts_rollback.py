"""Rollouts end to end, rollbacks on evidence: the real stack (Triton, gateway, Prometheus,
Alertmanager), steady load, and the controller as a separate process (`modelcanary rollout
start`).

The tests share one stack, stable at version 2, and each rollout from 2 ends rolled back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from modelcanary.load.generator import BackgroundLoad
from modelcanary.local.stack import LocalStack
from modelcanary.serving.faults import FaultSpec, set_faults
from tests.conftest import metric_value
from tests.support.local_rollouts import (
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
STABLE = 2  # the stack's stable version as it starts: every rollout here starts from it


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
    shadows = httpx.get(
        f"{stack.urls['gateway']}/admin/shadow", headers={"Authorization": f"Bearer {token}"}
    ).json()
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
        "status": "firing",
        "startsAt": "",
        "endsAt": "0001-01-01T00:00:00Z",
        "labels": {
            "alertname": "ModelVersionHighErrorRatio",
            "severity": "critical",
            "model": "digits",
            "version": "3",
            "source": "gateway",
        },
        "annotations": {},
        "fingerprint": "pushed-digits-3",
    }
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
        code, output = roll_back(stack, process)
    finally:
        notify(stack, {**pushed, "status": "resolved", "startsAt": posted.isoformat()})
    assert code == 1 and state(stack).history[-1].reason.endswith("done"), output
    assert "ModelVersionHighErrorRatio" not in output


def notify(stack: LocalStack, alert: dict[str, object]) -> None:
    """Post to the controller's webhook as Alertmanager does."""
    token = Path(stack.urls["run_dir"], "controller.token").read_text().strip()
    body = {
        "version": "4",
        "status": alert["status"],
        "receiver": "controller",
        "groupKey": "{}:{}",
        "alerts": [alert],
    }
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
