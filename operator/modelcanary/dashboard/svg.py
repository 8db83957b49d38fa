"""Line charts over time as inline SVG: series in, markup out. Pure.

Used by the demo's report and the live dashboard, so both draw alike and neither needs a
script or an external asset to show a chart.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Points = list[tuple[float, float]]
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True)
class Frame:
    """The box a chart is drawn in, in pixels."""

    width: int = 960
    height: int = 200
    left: int = 60
    right: int = 20
    top: int = 16
    bottom: int = 28


def line_chart(
    title: str,
    unit: str,
    series: Mapping[str, Points],
    start: float,
    end: float,
    scale: float = 1.0,
    floor_max: float = 1.0,
    markers: Sequence[tuple[float, str]] = (),
    frame: Frame = Frame(),
    colors: Mapping[str, str] | None = None,
    gap_s: float = 5.0,
) -> str:
    """One SVG chart: a polyline per series (gaps where there is no data, never a 0),
    its legend, a y axis that shows at least `floor_max` (display units) and dashed
    vertical markers with their labels as tooltips. Values are multiplied by `scale`; points
    further apart than `gap_s` are not joined."""
    f = frame
    span = max(end - start, 1.0)
    values = [v * scale for pts in series.values() for _, v in pts if math.isfinite(v)]
    top = max([floor_max, *values]) * 1.05
    plot_w, plot_h = f.width - f.left - f.right, f.height - f.top - f.bottom

    def x(t: float) -> float:
        return f.left + (min(max(t, start), end) - start) / span * plot_w

    def y(v: float) -> float:
        return f.top + plot_h - (v * scale) / top * plot_h

    parts = [
        f'<svg class="chart" width="{f.width}" height="{f.height}" '
        f'viewBox="0 0 {f.width} {f.height}" role="img" aria-label="{_e(title)}">',
        f'<text x="{f.left}" y="12" font-weight="bold">{_e(title)}</text>',
        f'<rect x="{f.left}" y="{f.top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = top / 1.05 * fraction
        ty = f.top + plot_h - value / top * plot_h
        parts.append(
            f'<text x="{f.left - 6}" y="{ty + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value:.3g}{_e(unit)}</text>"
        )
    for at, label in markers:
        mx = x(at)
        parts.append(
            f'<line x1="{mx:.1f}" y1="{f.top}" x2="{mx:.1f}" y2="{f.top + plot_h}" '
            f'stroke="#888" stroke-dasharray="3,3"><title>{_e(label)}</title></line>'
        )
    for index, (name, points) in enumerate(series.items()):
        color = (colors or {}).get(name, COLORS[index % len(COLORS)])
        for segment in segments(points, gap_s):
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in segment)
            parts.append(
                f'<polyline data-series="{_e(name)}" points="{coords}" fill="none" '
                f'stroke="{color}" stroke-width="1.8"/>'
            )
        parts.append(
            f'<text x="{f.width - f.right - 8 - 110 * index}" y="12" text-anchor="end" '
            f'fill="{color}" font-size="12">{_e(name)}</text>'
        )
    parts.append(
        f'<text x="{f.left}" y="{f.height - 8}" font-size="11">{_e(_clock(start))}</text>'
        f'<text x="{f.width - f.right}" y="{f.height - 8}" font-size="11" text-anchor="end">'
        f"{_e(_clock(end))}</text></svg>"
    )
    return "\n".join(parts)


def segments(points: Points, gap_s: float = 5.0) -> list[Points]:
    """Runs of finite points without gaps longer than `gap_s` (no data is not zero)."""
    found: list[Points] = []
    current: Points = []
    last = None
    for t, v in points:
        if not math.isfinite(v) or (last is not None and t - last > gap_s):
            if current:
                found.append(current)
            current = []
        if math.isfinite(v):
            current.append((t, v))
        last = t
    if current:
        found.append(current)
    return found


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _e(text: str) -> str:
    return html.escape(str(text))
