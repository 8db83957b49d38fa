"""Before the first step: waiting for a ready canary, its checks and both versions'
counters (rule 4 of the stepper), and the shadow comparison (rule 4b). Pure."""

from __future__ import annotations

from modelcanary.rollout.decision import Decision, Situation
from modelcanary.rollout.judge import SHADOW_CHECKS
from modelcanary.rollout.ports import FiringAlert, GoldenResult


def before_first_step(s: Situation) -> Decision | None:
    """Rule 4: a pending rollout rolls back on golden samples that do not match or a canary
    worse on the holdout; with a ready canary and both checks done it shadows (where the
    platform mirrors) or, once the counters are read, takes its first step; otherwise it
    waits, up to `progressDeadline`."""
    spec, golden, gate = s.spec, s.golden, s.gate
    if s.state.phase != "Pending":
        return None
    if golden is not None and not golden.passed:
        return s.decision(
            "rollback", f"golden samples do not match PyTorch: {golden.worst}", weight=0
        )
    if gate is not None and gate.outcome == "worse":
        return s.decision("rollback", f"worse than stable on the holdout: {gate.summary}", weight=0)
    if not s.ready or golden is None or gate is None:
        return pending(s, _missing(s.ready, golden))
    if s.shadow_available and spec.shadow.enabled:  # no traffic yet: no counters needed
        return s.decision(
            "shadow",
            f"golden samples match ({golden.worst}); holdout {gate.outcome}: "
            f"{gate.summary}; shadowing {spec.shadow.percent}% of stable's requests",
        )
    if s.counters is not None:  # evidence counts from a real observation
        return pending(s, _unread(s.counters))
    unmirrored = "; no shadow comparison here" if spec.shadow.enabled else ""
    return s.decision(
        "start",
        f"golden samples match ({golden.worst}); holdout {gate.outcome}: "
        f"{gate.summary}{unmirrored}; step 1",
        0,
        spec.steps[0],
    )


def pending(s: Situation, missing: tuple[str, str]) -> Decision:
    """Wait for what is `missing` (what never came, what is awaited: a ready canary, its
    golden-sample check, the holdout gate, the counters), up to `progressDeadline` from
    when the rollout was first seen; then roll back, saying what never came."""
    spec, now = s.spec, s.now
    deadline = spec.progress_deadline
    begun = s.state.created_at if s.state.created_at is not None else now
    left = spec.progress_deadline_s - (now - begun)
    never, what = missing
    if left < 0:
        return s.decision("rollback", f"{never} within progressDeadline {deadline}", weight=0)
    return s.decision(
        "hold", f"waiting for {what} ({left:.0f}s left of progressDeadline {deadline})"
    )


def _missing(ready: bool, golden: GoldenResult | None) -> tuple[str, str]:
    """What a pending rollout never got, and what it waits for, first."""
    if not ready:
        return "the canary was not ready", "the canary to be ready"
    if golden is None:
        return "the golden-sample check did not run", "the golden-sample check of the canary"
    return "the holdout gate did not run", "the holdout gate"


def _unread(counters: str) -> tuple[str, str]:
    return (
        f"the counters were never read ({counters})",
        f"the counters before the first step ({counters})",
    )


def shadowing(s: Situation) -> Decision | None:
    """Rule 4b, while the rollout shadows: roll back on evidence of disagreement (top-1
    classes, or numeric answers beyond tolerance); start the first step after enough pairs
    of every output compared (or `maxDuration` with no evidence against the canary) once
    the counters are read; hold otherwise."""
    if s.state.phase != "Shadowing":
        return None
    spec, state, verdict, now = s.spec, s.state, s.verdict, s.now
    shadow = spec.shadow
    begun = state.created_at if state.created_at is not None else now
    if now - begun > spec.progress_deadline_s:
        return s.decision(
            "rollback", f"not promoted within progressDeadline {spec.progress_deadline}", weight=0
        )
    compared = [c for c in verdict.checks if c.name in SHADOW_CHECKS and c.result != "skipped"]
    failed = next((c for c in compared if c.result == "fail"), None)
    if failed is not None:
        return s.decision("rollback", f"shadow comparison: {failed.detail}", weight=0)
    since = now - (state.shadow_started_at if state.shadow_started_at is not None else now)
    waiting = next((c for c in compared if c.result == "inconclusive"), None)
    if not compared or waiting is not None:
        why = waiting.detail if waiting is not None else "no shadow comparison"
        if since > spec.no_data_after_s and spec.analysis.no_data.action == "rollback":
            return s.decision(
                "rollback",
                f"no data for more than {spec.analysis.no_data.after} ({why})",
                weight=0,
            )
        return s.decision("hold", f"shadowing: waiting: {why}")
    alert = firing(s.alerts, spec.canary.version, spec.analysis.alerts.hold_on)
    if alert is not None:
        return s.decision("hold", f"shadowing: holding: alert {alert.name} ({alert.severity})")
    drift = next((c for c in verdict.checks if c.name == "input_drift"), None)
    if drift is not None and drift.result == "inconclusive":
        return s.decision("hold", f"shadowing: holding: {drift.detail}")
    pairs = min(c.samples for c in compared)  # every output compared judges from minSamples
    if pairs >= shadow.min_samples or since >= spec.shadow_max_s:
        if s.counters is not None:
            return s.decision("hold", f"shadowing: waiting for the counters ({s.counters})")
        found = "; ".join(c.detail for c in compared)
        return s.decision("start", f"shadow comparison: {found}; step 1", 0, spec.steps[0])
    return s.decision(
        "hold",
        f"shadowing: {pairs} of {shadow.min_samples} pairs "
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
