"""The chart's Grafana dashboards, as Grafana's JSON model: a rollout overview and a
per-model canary-versus-stable view, over the recording rules the chart installs
(modelcanary.alerts.rules) and the operator's own series (kube.rollout_metrics).

`$namespace` filters the operator's series only: the recording rules sum over pods and
keep `{model, version, source}`. The error ratio is drawn from the recorded totals, as in
the demo's report (modelcanary.dashboard.queries says why). Pure.
"""

from __future__ import annotations

import json
from typing import Any

from modelcanary.alerts import promql as q
from modelcanary.metrics_contract import ROLLOUT_HOLDOUT, ROLLOUT_PHASE

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILES = {"modelcanary-rollouts.json": "rollouts", "modelcanary-canary.json": "canary"}


def _variable(name: str, query: str, label: str, all_value: str | None = None) -> dict[str, Any]:
    variable: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "current": {},
    }
    if all_value is not None:
        variable |= {"includeAll": True, "multi": True, "allValue": all_value}
    return variable


def _variables(model: bool) -> dict[str, Any]:
    found = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        _variable("namespace", f"label_values({ROLLOUT_PHASE}, namespace)", "namespace", ".*"),
        _variable("source", f"label_values({q.REQUESTS}, source)", "metrics source"),
    ]
    if model:
        query = f'label_values({q.REQUESTS}{{source="$source"}}, model)'
        found.append(_variable("model", query, "model"))
    return {"list": found}


def _panel(
    title: str,
    expressions: list[tuple[str, str]],
    unit: str,
    kind: str = "timeseries",
    description: str = "",
    table: bool = False,
    **defaults: Any,
) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": expr,
            "legendFormat": legend,
            **({"format": "table", "instant": True} if table else {}),
        }
        for i, (expr, legend) in enumerate(expressions)
    ]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, **defaults}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
    }


def _with_role(expression: str, model: str) -> str:
    """The series labelled with the version's role in the rollout (stable or canary)."""
    roles = f"max by (model, version, role) ({q.ROLE}{{{model}}})"
    return f"({expression}) * on (model, version) group_left (role) {roles}"


def canary_panels() -> list[dict[str, Any]]:
    m, ms = 'model="$model"', 'model="$model", source="$source"'
    phase = f'max by (phase) ({ROLLOUT_PHASE}{{namespace=~"$namespace", {m}}})'
    by = "by (model, version)"
    errors = f"sum {by} (increase({q.ERRORS_TOTAL}{{{ms}}}[$__rate_interval]))"
    requests = f"sum {by} (increase({q.REQUESTS_TOTAL}{{{ms}}}[$__rate_interval]))"
    legend = "{{role}} v{{version}}"
    # a table of panels: one _panel(...) each, its arguments wrapped by hand
    # fmt: off
    return [
        _panel("Rollout phase", [(phase, "{{phase}}")], "none", "state-timeline",
               "1 while the rollout is in the phase"),
        _panel("Weight", [(_with_role(f"max {by} ({q.EXPECTED_SHARE}{{{m}}}) * 100", m), legend)],
               "percent", min=0, max=100),
        _panel("Request rate", [(_with_role(f"sum {by} ({q.REQUESTS}{{{ms}}})", m), legend)],
               "reqps", min=0),
        _panel("Error ratio", [(_with_role(f"{errors} / {requests}", m), legend)], "percentunit",
               "server errors over requests; from the cumulative counts, so the first errors "
               "of a new version count", min=0),
        _panel("P99 latency", [(_with_role(f"max {by} ({q.LATENCY_P99}{{{ms}}})", m), legend)],
               "s", min=0),
        _panel("Shadow agreement",
               [(f'max {by} ({q.SHADOW_AGREEMENT}{{{m}, kind="classification"}})',
                 "canary v{{version}}")], "percentunit",
               "share of mirrored requests where the canary's top-1 class is stable's", min=0,
               max=1),
        _panel("Input drift (worst feature's PSI)",
               [(f"max {by} ({q.SHADOW_DRIFT}{{{m}}})", "canary v{{version}}")], "none", min=0),
        _panel("Holdout gate",
               [(f'max by (version, value) ({ROLLOUT_HOLDOUT}{{namespace=~"$namespace", {m}}})',
                 "v{{version}} {{value}}")], "percentunit", "bargauge",
               "accuracy of canary and stable on the labelled holdout, and the interval of "
               "canary minus stable; the gate passes unless the interval lies below -margin"),
        _panel("Alerts", [(f"sum by (alertname, version, severity, alertstate) (ALERTS{{{m}}})",
                           "{{alertname}} v{{version}} {{alertstate}}")], "none", "table",
               table=True),
    ]
    # fmt: on


def rollout_panels() -> list[dict[str, Any]]:
    ns, s = 'namespace=~"$namespace"', 'source="$source"'
    by = "by (model, version)"
    legend = "{{model}} v{{version}}"
    canary = f'{q.ROLE}{{role="canary"}}'
    # a table of panels: one _panel(...) each, its arguments wrapped by hand
    # fmt: off
    return [
        _panel("Rollouts by phase",
               [(f"max by (namespace, model, phase) ({ROLLOUT_PHASE}{{{ns}}}) == 1",
                 "{{namespace}}/{{model}} {{phase}}")], "none", "table", table=True),
        _panel("Canary weight",
               [(f"max {by} ({q.EXPECTED_SHARE}) * 100 * on (model, version) group_left () "
                 f"max {by} ({canary})", "{{model}} canary v{{version}}")], "percent",
               min=0, max=100),
        _panel("Request rate by version", [(f"sum {by} ({q.REQUESTS}{{{s}}})", legend)], "reqps"),
        _panel("Error ratio by version", [(f"max {by} ({q.ERROR_RATIO}{{{s}}})", legend)],
               "percentunit", min=0),
        _panel("P99 latency by version", [(f"max {by} ({q.LATENCY_P99}{{{s}}})", legend)], "s",
               min=0),
        _panel("Firing alerts",
               [('sum by (alertname, model, version, severity) (ALERTS{alertstate="firing", '
                 'model!=""})', "{{alertname}} {{model}} v{{version}}")], "none", "table",
               table=True),
    ]
    # fmt: on


def _laid_out(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two panels a row, tables and timelines across the whole width."""
    placed, x, y = [], 0, 0
    for index, panel in enumerate(panels, start=1):
        wide = panel["type"] in ("table", "state-timeline")
        if wide and x:
            x, y = 0, y + 8
        width = 24 if wide else 12
        placed.append({"id": index, "gridPos": {"h": 8, "w": width, "x": x, "y": y}, **panel})
        x += width
        if x >= 24:
            x, y = 0, y + 8
    return placed


def dashboard(name: str) -> dict[str, Any]:
    """`rollouts` (every rollout) or `canary` (one model, canary versus stable)."""
    model = name == "canary"
    title = "modelcanary: canary vs stable" if model else "modelcanary: rollouts"
    return {
        "uid": f"modelcanary-{name}",
        "title": title,
        "tags": ["modelcanary"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": _variables(model),
        "panels": _laid_out(canary_panels() if model else rollout_panels()),
    }


def render(name: str) -> str:
    return json.dumps(dashboard(name), indent=2) + "\n"


def expressions(document: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' and its variables' queries."""
    found = [t["expr"] for p in document["panels"] for t in p["targets"]]
    found += [v["query"]["query"] for v in document["templating"]["list"] if v["type"] == "query"]
    return found
