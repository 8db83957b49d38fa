"""What a person sees of a rollout: status, history, progress lines, allowed actions.

Pure: spec, state and the time in, text or a JSON document out. The local commands use it
now and the kubectl plugin will, so the two look the same.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from modelcanary.rollout.judge import Check
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import RolloutState
from modelcanary.tables import format_table


def time_left(spec: RolloutSpec, state: RolloutState, now: float) -> float | None:
    """Seconds until the current step may advance (None when not progressing)."""
    if state.phase != "Progressing" or state.step_started_at is None:
        return None
    return max(0.0, spec.interval_s - (now - state.step_started_at))


def earliest_full(spec: RolloutSpec, state: RolloutState, now: float) -> float | None:
    """Seconds until the canary can reach 100% at the earliest (None when not progressing)."""
    left = time_left(spec, state, now)
    if left is None:
        return None
    remaining = len(spec.steps) - 1 - state.step
    return 0.0 if remaining <= 0 else left + spec.interval_s * (remaining - 1)


def status_document(
    name: str, spec: RolloutSpec, state: RolloutState, now: float
) -> dict[str, Any]:
    """Everything `status -o json` prints."""
    analysis = state.analysis
    return {
        "name": name,
        "model": spec.model,
        "stable": spec.stable.version,
        "canary": spec.canary.version,
        "phase": state.phase,
        "step": state.step + 1,
        "steps": list(spec.steps),
        "weight": state.weight,
        "weight_applied": state.applied,
        "failures": state.failures,
        "failure_limit": spec.analysis.failure_limit,
        "step_time_left_s": _rounded(time_left(spec, state, now)),
        "earliest_full_traffic_s": _rounded(earliest_full(spec, state, now)),
        "checked_at": analysis.at if analysis else None,
        "verdict": analysis.result if analysis else None,
        "reason": analysis.reason if analysis else "",
        "checks": [asdict(c) for c in analysis.checks] if analysis else [],
        "alerts": [asdict(a) for a in analysis.alerts] if analysis else [],
        "golden": asdict(state.golden) if state.golden else None,
        "gate": asdict(state.gate) if state.gate else None,
        "history": [asdict(t) for t in state.history],
    }


def render_status(
    name: str, spec: RolloutSpec, state: RolloutState, now: float, history: int = 8
) -> str:
    """The status as a person reads it."""
    lines = [
        f"rollout {name}: {spec.model} version {spec.stable.version} -> {spec.canary.version}",
        f"  phase     {state.phase}",
        f"  step      {_step(spec, state)}",
        f"  weight    {state.weight}% to canary {spec.canary.version}"
        + ("" if state.applied else " (being applied)"),
    ]
    if spec.analysis.failure_limit:
        lines.append(f"  failures  {state.failures} of {spec.analysis.failure_limit} tolerated")
    left, full = time_left(spec, state, now), earliest_full(spec, state, now)
    if left is not None and full is not None:
        lines.append(f"  step ends in {left:.0f}s; 100% at the earliest in {full:.0f}s")
    lines += _before_traffic(state)
    analysis = state.analysis
    if analysis is not None:
        lines.append(
            f"  checks as of {_ago(now - analysis.at)}: {analysis.result}: {analysis.reason}"
        )
        lines += ["", _indent(_checks_table(analysis.checks))]
        firing = [a for a in analysis.alerts if a.version == spec.canary.version]
        lines.append("")
        if firing:
            lines.append("  alerts for the canary:")
            lines += [f"    {a.name} ({a.severity}, {a.state})" for a in firing]
        else:
            lines.append("  alerts for the canary: none")
    if state.history:
        lines += ["", "  history:", _indent(render_history(state, spec, history), 4)]
    return "\n".join(lines)


def render_history(state: RolloutState, spec: RolloutSpec, last: int | None = None) -> str:
    """Transitions as a table: time, action, phase, step, weight, by, reason and numbers."""
    rows = [("time", "action", "phase", "step", "weight", "by", "reason")]
    transitions = state.history if last is None else state.history[-last:]
    for t in transitions:
        numbers = ", ".join(f"{k}={_number(v)}" for k, v in t.numbers.items())
        rows.append(
            (
                _clock(t.at),
                t.action,
                t.phase,
                f"{t.step + 1}/{len(spec.steps)}",
                f"{t.weight}%",
                t.by,
                t.reason + (f" [{numbers}]" if numbers else ""),
            )
        )
    return format_table(rows)


def progress_line(spec: RolloutSpec, state: RolloutState, now: float) -> str:
    """One line per tick for a live view."""
    analysis = state.analysis
    checks = {c.name: c for c in analysis.checks} if analysis else {}
    error, p99 = checks.get("error_ratio"), checks.get("latency_p99_s")
    seen = ""
    if error is not None:
        seen = f"n={error.samples}"
        if error.value is not None:
            seen += f" err={error.value:.1%}"
        if p99 is not None and p99.value is not None:
            seen += f" p99={p99.value * 1000:.0f}ms"
    reason = analysis.reason if analysis else ""
    return (
        f"{_clock(now)}  {state.phase:<11} step {_step(spec, state):<9} "
        f"canary {state.weight:>3}%  {seen:<30} {reason}"
    ).rstrip()


def _before_traffic(state: RolloutState) -> list[str]:
    """The golden-sample check and the holdout gate, as last run before the first step."""
    lines = []
    if state.golden is not None:
        result = "passed" if state.golden.passed else "FAILED"
        lines.append(f"  golden    {result}: {state.golden.worst}")
    if state.gate is not None:
        lines.append(f"  holdout   {state.gate.outcome}: {state.gate.summary}")
    return lines


def _checks_table(checks: tuple[Check, ...]) -> str:
    rows = [("check", "value", "threshold", "samples", "evidence", "result", "detail")]
    for c in checks:
        value = "-" if c.value is None else _number(c.value)
        evidence = "-"
        if c.evidence is not None and c.evidence_limit is not None:
            evidence = f"{c.evidence:.3g} of {c.evidence_limit:g}"
        rows.append(
            (c.name, value, _number(c.threshold), str(c.samples), evidence, c.result, c.detail)
        )
    return format_table(rows)


def _step(spec: RolloutSpec, state: RolloutState) -> str:
    if state.step < 0:
        return f"0/{len(spec.steps)}"
    return f"{state.step + 1}/{len(spec.steps)} ({spec.steps[state.step]}%)"


def _number(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{seconds:.0f}s ago"


def _indent(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())
