"""What the live page shows of one rollout: a JSON card and its HTML. Pure.

Built on the same status document as `modelcanary status -o json` and `kubectl canary
status` (modelcanary.rollout.view), plus charts: the weight from the rollout's own
history, and each version's traffic from Prometheus when the caller has it.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from modelcanary.dashboard.queries import Panel, Points
from modelcanary.dashboard.svg import Frame, line_chart
from modelcanary.rollout.intents import BY_ACTION, FINISHED, IntentAction
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import RolloutState
from modelcanary.rollout.view import status_document

ACTIONS: tuple[IntentAction, ...] = ("promote", "pause", "resume", "rollback")
STABLE_COLOR, CANARY_COLOR = "#1f77b4", "#d62728"
FRAME = Frame(width=470, height=170, left=56, right=12)
MAX_WINDOW_S = 900.0  # the charts show at most the last 15 minutes
PADDING_S = 10.0


@dataclass(frozen=True)
class Found:
    """One rollout as a backend read it: its spec (None when not valid) and state."""

    key: str  # unique on the page: the name locally, namespace/name in a cluster
    name: str
    namespace: str
    spec: RolloutSpec | None
    state: RolloutState
    problem: str = ""  # why the spec or state could not be read


def window(state: RolloutState, now: float) -> tuple[float, float]:
    """The time the charts cover: from the rollout's start (at most 15 minutes back) to
    now, or to shortly after its end once finished."""
    first = [t for t in (state.created_at, state.started_at) if t is not None]
    first += [t.at for t in state.history[:1]]
    end = now
    if state.phase in FINISHED and state.history:
        end = min(now, state.history[-1].at + 30.0)
    start = min(first, default=end - 60.0) - PADDING_S
    return max(start, end - MAX_WINDOW_S), end


def step_s(start: float, end: float) -> float:
    """Range query resolution: about 240 points, never below a second."""
    return max(1.0, round((end - start) / 240.0))


def weight_series(spec: RolloutSpec, state: RolloutState, now: float) -> dict[str, Points]:
    """Each version's weight over time, as steps, from the transitions the rollout made."""
    canary: Points = []
    for t in state.history:
        if canary:
            canary.append((t.at, canary[-1][1]))
        canary.append((t.at, float(t.weight)))
    if canary:
        canary.append((now, float(state.weight)))
    stable = [(at, 100.0 - w) for at, w in canary]
    if state.phase == "Promoted":  # the canary became stable at 100%
        stable = [(at, 100.0 - w if at < state.history[-1].at else 0.0) for at, w in canary]
    return {_label(spec, "stable"): stable, _label(spec, "canary"): canary}


def card(
    found: Found,
    now: float,
    panels: list[Panel],
    traffic: Mapping[str, Mapping[str, Points]],
    traffic_problem: str = "",
) -> dict[str, Any]:
    """Everything the page shows of one rollout, with its HTML."""
    base: dict[str, Any] = {"key": found.key, "name": found.name, "namespace": found.namespace}
    spec, state = found.spec, found.state
    if spec is None:
        base |= {"phase": "Invalid", "problem": found.problem, "actions": []}
        base["html"] = _invalid_html(base)
        return base
    document = status_document(found.name, spec, state, now)
    base |= document
    base["problem"] = found.problem or traffic_problem
    base["actions"] = [
        {
            "action": a,
            "label": v.name,
            "allowed": state.phase in v.allowed_in,
            "reason_required": v.reason_required,
        }
        for a in ACTIONS
        for v in [BY_ACTION[a]]
    ]
    start, end = window(state, now)
    colors = {_label(spec, "stable"): STABLE_COLOR, _label(spec, "canary"): CANARY_COLOR}
    marks = _markers(state)
    chart = partial(line_chart, start=start, end=end, markers=marks, frame=FRAME, colors=colors)
    weight = weight_series(spec, state, end)
    # the weight is known between transitions: one line, however far apart
    charts = [chart("Weight", "%", weight, floor_max=100, gap_s=math.inf)]
    gap = max(5.0, 2.5 * step_s(start, end))
    for panel in [] if traffic_problem else panels:
        series = _by_role(spec, traffic.get(panel.title, {}))
        scale, floor_max = panel.scale, panel.floor_max
        charts.append(
            chart(panel.title, panel.unit, series, scale=scale, floor_max=floor_max, gap_s=gap)
        )
    base["html"] = _card_html(base, charts)
    return base


def _by_role(spec: RolloutSpec, series: Mapping[str, Points]) -> dict[str, Points]:
    """Series by version to series by role (stable first, as the colours say)."""
    found = {}
    for role, version in (("stable", spec.stable.version), ("canary", spec.canary.version)):
        if version in series:
            found[_label(spec, role)] = series[version]
    return found


def _label(spec: RolloutSpec, role: str) -> str:
    version = spec.stable.version if role == "stable" else spec.canary.version
    return f"{role} v{version}"


def _markers(state: RolloutState) -> list[tuple[float, str]]:
    return [(t.at, f"{t.action}: {t.reason}") for t in state.history]


def _card_html(c: dict[str, Any], charts: list[str]) -> str:
    left = c["step_time_left_s"]
    facts = [
        ("phase", f'<span class="phase" data-phase="{_e(c["phase"])}">{_e(c["phase"])}</span>'),
        ("step", f"{c['step']} of {len(c['steps'])} ({' → '.join(f'{s}%' for s in c['steps'])})"),
        (
            "weight",
            f'<span class="weight">{c["weight"]}%</span> to canary'
            + ("" if c["weight_applied"] else " (being applied)"),
        ),
        ("time left", "-" if left is None else f"{left:.0f} s in this step"),
        ("failures", f"{c['failures']} of {c['failure_limit']} tolerated"),
    ]
    parts = [
        f"<h2>{_e(c['name'])} <small>{_e(c['namespace'])}</small></h2>",
        f'<p class="model">model <b>{_e(c["model"])}</b>: stable {_e(c["stable"])} → canary '
        f"{_e(c['canary'])}</p>",
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
    ]
    if c["problem"]:
        parts.append(f'<p class="problem">{_e(c["problem"])}</p>')
    if c["verdict"]:
        parts.append(
            f'<p class="verdict">last check {_clock(c["checked_at"])}: <b>{_e(c["verdict"])}'
            f"</b> {_e(c['reason'])}</p>"
        )
    parts += [_before_traffic(c), '<div class="charts">' + "".join(charts) + "</div>"]
    parts += [_checks(c["checks"]), _alerts(c["alerts"]), _history(c["history"])]
    return "\n".join(parts)


def _before_traffic(c: dict[str, Any]) -> str:
    rows = []
    if c["golden"]:
        result = "passed" if c["golden"]["passed"] else "FAILED"
        rows.append(f"<li>golden samples {result}: {_e(c['golden']['worst'])}</li>")
    gate = c["gate"]
    if gate:
        n = gate["numbers"]
        interval = ""
        if "holdout_difference_low" in n:
            interval = (
                f" — canary {float(n['holdout_canary']):.3f} vs stable "
                f"{float(n['holdout_stable']):.3f}, difference "
                f"[{float(n['holdout_difference_low']):+.3f}, "
                f"{float(n['holdout_difference_high']):+.3f}] on {n.get('holdout_samples')} samples"
            )
        rows.append(
            f'<li class="gate">holdout gate <b>{_e(gate["outcome"])}</b>{_e(interval)}'
            f"<br><small>{_e(gate['summary'])}</small></li>"
        )
    return f"<ul>{''.join(rows)}</ul>" if rows else ""


def _checks(checks: list[dict[str, Any]]) -> str:
    rows = [("check", "value", "threshold", "samples", "e-value", "result", "detail")]
    for k in checks:
        evidence = "-"
        if k.get("evidence") is not None and k.get("evidence_limit") is not None:
            evidence = f"{k['evidence']:.3g} of {k['evidence_limit']:g}"
        rows.append(
            (
                k["name"],
                _number(k["value"]),
                _number(k["threshold"]),
                str(k["samples"]),
                evidence,
                k["result"],
                k.get("detail", ""),
            )
        )
    return "<h3>Checks</h3>" + _table(rows, "checks")


def _alerts(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return '<h3>Alerts</h3><p class="muted">none firing</p>'
    rows = [("alert", "severity", "version", "state")]
    rows += [(a["name"], a["severity"], a["version"], a["state"]) for a in alerts]
    return "<h3>Alerts</h3>" + _table(rows, "alerts")


def _history(history: list[dict[str, Any]]) -> str:
    rows = [("time", "action", "phase", "weight", "by", "reason")]
    for t in reversed(history[-12:]):
        rows.append(
            (_clock(t["at"]), t["action"], t["phase"], f"{t['weight']}%", t["by"], t["reason"])
        )
    return "<h3>History</h3>" + _table(rows, "history")


def _invalid_html(c: dict[str, Any]) -> str:
    return (
        f"<h2>{_e(c['name'])} <small>{_e(c['namespace'])}</small></h2>"
        f'<p><span class="phase" data-phase="Invalid">Invalid</span></p>'
        f'<p class="problem">{_e(c["problem"])}</p>'
    )


def _table(rows: Sequence[Sequence[str]], name: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    if not rows[1:]:
        body = f'<tr><td colspan="{len(rows[0])}" class="muted">none yet</td></tr>'
    return f'<table class="{name}"><tr>{head}</tr>{body}</table>'


def _number(value: float | int | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _clock(at: float | None) -> str:
    return "-" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def _e(text: object) -> str:
    return html.escape(str(text))
