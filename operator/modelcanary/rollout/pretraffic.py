"""Before the first step: waiting for a ready canary, its checks and both versions'
counters, and the shadow comparison (rules 4 and 4b of the stepper). Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from modelcanary.rollout.judge import Verdict
from modelcanary.rollout.ports import FiringAlert
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import RolloutState

if TYPE_CHECKING:
    from modelcanary.rollout.stepper import Decision


def pending(
    spec: RolloutSpec,
    state: RolloutState,
    missing: tuple[str, str],
    now: float,
    make: Callable[..., Decision],
) -> Decision:
    """Wait for what is `missing` (what never came, what is awaited: a ready canary, its
    golden-sample check, the holdout gate, the counters), up to `progressDeadline` from
    when the rollout was first seen; then roll back, saying what never came."""
    deadline = spec.progress_deadline
    begun = state.created_at if state.created_at is not None else now
    left = spec.progress_deadline_s - (now - begun)
    never, what = missing
    if left < 0:
        return make("rollback", f"{never} within progressDeadline {deadline}", weight=0)
    return make("hold", f"waiting for {what} ({left:.0f}s left of progressDeadline {deadline})")


def shadowing(
    spec: RolloutSpec,
    state: RolloutState,
    verdict: Verdict,
    alerts: tuple[FiringAlert, ...],
    counters: str | None,
    now: float,
    make: Callable[..., Decision],
) -> Decision:
    """Roll back on evidence of disagreement; start the first step after enough pairs (or
    `maxDuration` with no evidence against the canary) once the counters are read; hold
    otherwise."""
    shadow = spec.shadow
    begun = state.created_at if state.created_at is not None else now
    if now - begun > spec.progress_deadline_s:
        return make(
            "rollback", f"not promoted within progressDeadline {spec.progress_deadline}", weight=0
        )
    check = next((c for c in verdict.checks if c.name == "prediction_agreement"), None)
    if check is not None and check.result == "fail":
        return make("rollback", f"shadow comparison: {check.detail}", weight=0)
    since = now - (state.shadow_started_at if state.shadow_started_at is not None else now)
    if check is None or check.result == "inconclusive":
        why = check.detail if check is not None else "no shadow comparison"
        if since > spec.no_data_after_s and spec.analysis.no_data.action == "rollback":
            return make(
                "rollback",
                f"no data for more than {spec.analysis.no_data.after} ({why})",
                weight=0,
            )
        return make("hold", f"shadowing: waiting: {why}")
    alert = firing(alerts, spec.canary.version, spec.analysis.alerts.hold_on)
    if alert is not None:
        return make("hold", f"shadowing: holding: alert {alert.name} ({alert.severity})")
    drift = next((c for c in verdict.checks if c.name == "input_drift"), None)
    if drift is not None and drift.result == "inconclusive":
        return make("hold", f"shadowing: holding: {drift.detail}")
    if check.samples >= shadow.min_samples or since >= spec.shadow_max_s:
        if counters is not None:
            return make("hold", f"shadowing: waiting for the counters ({counters})")
        return make("start", f"shadow comparison: {check.detail}; step 1", 0, spec.steps[0])
    return make(
        "hold",
        f"shadowing: {check.samples} of {shadow.min_samples} pairs "
        f"({spec.shadow_max_s - since:.0f}s left of maxDuration {shadow.max_duration})",
    )


def firing(
    alerts: tuple[FiringAlert, ...], version: str, severities: tuple[str, ...]
) -> FiringAlert | None:
    """The first firing alert for the version with one of the severities."""
    for alert in alerts:
        if alert.version == version and alert.state == "firing" and alert.severity in severities:
            return alert
    return None
