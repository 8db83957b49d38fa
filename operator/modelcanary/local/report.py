"""The demo's report: one self-contained HTML page with SVG charts and tables.

Pure: series, markers, summary rows and notifications in, HTML out (range queries run
through the function the caller passes). No scripts, no external assets, so it opens
anywhere; the charts are drawn by modelcanary.dashboard.svg, as on the live dashboard.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelcanary.dashboard.queries import Panel, QueryRange, run_panels, traffic_panels
from modelcanary.dashboard.svg import Points, line_chart
from modelcanary.metrics_contract import GATEWAY_WEIGHT


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str  # shown on the axis, e.g. "%", "ms"
    series: dict[str, Points]  # version -> points
    scale: float = 1.0  # multiply values for display (ratio -> percent)
    floor_max: float = 1.0  # the y axis shows at least up to this (display units)


def version_panels(model: str, source: str, window: str = "5s") -> list[Panel]:
    """The weight of every version of a model, then its traffic (dashboard.queries)."""
    weight = Panel(
        "Canary and stable weight", "%", f'{GATEWAY_WEIGHT}{{model="{model}"}}', floor_max=100
    )
    return [weight, *traffic_panels(model, source, window)]


def charts(
    query_range: QueryRange, panels: Sequence[Panel], start: float, end: float, step_s: float = 1.0
) -> list[Chart]:
    """Each panel's range query (one series per version) as a chart."""
    found = run_panels(query_range, panels, start, end, step_s)
    return [Chart(p.title, p.unit, found[p.title], p.scale, p.floor_max) for p in panels]


@dataclass(frozen=True)
class Report:
    title: str
    start: float
    end: float
    charts: Sequence[Chart]
    markers: Sequence[tuple[float, str]] = ()
    summary: Sequence[Sequence[str]] = ()  # first row is the header
    notifications: Sequence[dict[str, str]] = field(default_factory=list)
    notes: Sequence[str] = ()


def render(report: Report) -> str:
    drawn = "\n".join(_chart(c, report) for c in report.charts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(report.title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 24px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
.chart {{ margin-bottom: 12px; }} .muted {{ color: #666; }}
</style></head><body>
<h1>{_e(report.title)}</h1>
<p class="muted">{_e(_clock(report.start))} to {_e(_clock(report.end))}
({report.end - report.start:.0f} s)</p>
{"".join(f"<p>{_e(n)}</p>" for n in report.notes)}
<h2>Rollouts</h2>
{_table(report.summary)}
<h2>Traffic, errors and latency per version</h2>
{drawn}
<h2>On-call notifications</h2>
{_table(_notification_rows(report.notifications))}
</body></html>
"""


def _chart(chart: Chart, report: Report) -> str:
    series = {f"version {v}": points for v, points in sorted(chart.series.items())}
    return line_chart(
        chart.title,
        chart.unit,
        series,
        report.start,
        report.end,
        chart.scale,
        chart.floor_max,
        report.markers,
    )


def _notification_rows(notifications: Sequence[dict[str, str]]) -> list[list[str]]:
    fields = ("time", "channel", "status", "alertname", "severity", "version", "description")
    rows = [["time", "channel", "status", "alert", "severity", "version", "what"]]
    return rows + [[n.get(field, "") for field in fields] for n in notifications]


def _table(rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    if not rows[1:]:
        body = f"<tr><td colspan='{len(rows[0])}' class='muted'>none</td></tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _e(text: str) -> str:
    return html.escape(str(text))
