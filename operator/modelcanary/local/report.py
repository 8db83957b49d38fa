"""The demo's report: one self-contained HTML page with SVG charts and tables.

Pure: series, markers, summary rows and notifications in, HTML out. No scripts, no
external assets, so it opens anywhere.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

Points = list[tuple[float, float]]
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 960, 200, 60, 20, 16, 28


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str  # shown on the axis, e.g. "%", "ms"
    series: dict[str, Points]  # version -> points
    scale: float = 1.0  # multiply values for display (ratio -> percent)
    floor_max: float = 1.0  # the y axis shows at least up to this (display units)


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
    charts = "\n".join(_chart(c, report) for c in report.charts)
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
{charts}
<h2>On-call notifications</h2>
{_table(_notification_rows(report.notifications))}
</body></html>
"""


def _chart(chart: Chart, report: Report) -> str:
    span = max(report.end - report.start, 1.0)
    values = [v * chart.scale for pts in chart.series.values() for _, v in pts if math.isfinite(v)]
    top = max([chart.floor_max, *values]) * 1.05
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - report.start) / span * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - (v * chart.scale) / top * plot_h

    parts = [
        f'<svg class="chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{_e(chart.title)}">',
        f'<text x="{LEFT}" y="12" font-weight="bold">{_e(chart.title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = top / 1.05 * fraction
        ty = TOP + plot_h - value / top * plot_h
        parts.append(
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value:.3g}{_e(chart.unit)}</text>"
        )
    for at, label in report.markers:
        mx = x(at)
        parts.append(
            f'<line x1="{mx:.1f}" y1="{TOP}" x2="{mx:.1f}" y2="{TOP + plot_h}" stroke="#888" '
            f'stroke-dasharray="3,3"><title>{_e(label)}</title></line>'
        )
    for index, (version, points) in enumerate(sorted(chart.series.items())):
        color = COLORS[index % len(COLORS)]
        for segment in _segments(points):
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in segment)
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"/>'
            )
        parts.append(
            f'<text x="{WIDTH - RIGHT - 8 - 90 * index}" y="12" text-anchor="end" '
            f'fill="{color}" font-size="12">version {_e(version)}</text>'
        )
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11" class="muted">'
        f"{_e(_clock(report.start))}</text>"
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">'
        f"{_e(_clock(report.end))}</text></svg>"
    )
    return "\n".join(parts)


def _segments(points: Points, gap_s: float = 5.0) -> list[Points]:
    """Runs of finite points without gaps longer than `gap_s` (no data is not zero)."""
    segments: list[Points] = []
    current: Points = []
    last = None
    for t, v in points:
        if not math.isfinite(v) or (last is not None and t - last > gap_s):
            if current:
                segments.append(current)
            current = []
        if math.isfinite(v):
            current.append((t, v))
        last = t
    if current:
        segments.append(current)
    return segments


def _notification_rows(notifications: Sequence[dict[str, str]]) -> list[list[str]]:
    rows = [["time", "channel", "status", "alert", "severity", "version", "what"]]
    for n in notifications:
        rows.append(
            [
                n.get("time", ""), n.get("channel", ""), n.get("status", ""),
                n.get("alertname", ""), n.get("severity", ""), n.get("version", ""),
                n.get("description", ""),
            ]
        )  # fmt: skip
    return rows


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
