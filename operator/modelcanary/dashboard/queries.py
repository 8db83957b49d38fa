"""The PromQL behind the charts of a model's versions, for the report and the live page.

Errors and latency are the increase of the recorded cumulative series over a short
window, not the alert rules' windowed rates: a version's first failures create a new
counter series, and a rate over it misses the jump from no series to its first value, so
an incident of a few seconds (a canary rolled back on its first errors) showed as 0. The
recorded totals exist from a version's first request, at 0 errors until one fails. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelcanary.alerts import promql as q

Points = list[tuple[float, float]]
QueryRange = Callable[[str, float, float, float], list[tuple[dict[str, str], Points]]]


@dataclass(frozen=True)
class Panel:
    """One chart: what it queries from Prometheus and how it shows it."""

    title: str
    unit: str
    expression: str  # a range query; one series per version
    scale: float = 1.0
    floor_max: float = 1.0


def traffic_panels(
    model: str, source: str, window: str, versions: Sequence[str] = ()
) -> list[Panel]:
    """Request rate, error ratio, P99 and shadow agreement of a model's versions (of the
    given ones only, when there are)."""
    m = f'model="{model}", source="{source}"'
    if versions:
        m += f', version=~"{"|".join(versions)}"'
    errors = f"increase({q.ERRORS_TOTAL}{{{m}}}[{window}])"
    requests = f"increase({q.REQUESTS_TOTAL}{{{m}}}[{window}])"
    buckets = f"sum by (version, le) (increase({q.LATENCY_BUCKETS_TOTAL}{{{m}}}[{window}]))"
    unit_ms = 1000 * q.SOURCES[source].latency_unit_s if source in q.SOURCES else 1000
    shadow = f'model="{model}", kind="classification"'
    if versions:
        shadow += f', version="{versions[-1]}"'
    latency_p99 = f"histogram_quantile(0.99, {buckets})"
    agreement = f"{q.SHADOW_AGREEMENT}{{{shadow}}}"
    return [
        Panel("Requests per second", "/s", f"sum by (version) ({q.REQUESTS}{{{m}}})"),
        Panel(f"Error ratio ({window} windows)", "%", f"{errors} / {requests}", 100, 5),
        Panel(f"P99 latency ({window} windows)", " ms", latency_p99, unit_ms, 10),
        Panel("Shadow agreement with stable (top-1)", "%", agreement, 100, 100),
    ]


def run_panels(
    query_range: QueryRange, panels: Sequence[Panel], start: float, end: float, step_s: float
) -> dict[str, dict[str, Points]]:
    """Each panel's series by version, keyed by the panel's title."""
    return {
        p.title: {
            labels.get("version", "?"): points
            for labels, points in query_range(p.expression, start, end, step_s)
        }
        for p in panels
    }
