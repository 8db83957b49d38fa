"""Summaries of a load run: per served version, the rate, errors and latency percentiles.

Pure: outcomes in, a report out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from modelcanary.tables import format_table


@dataclass(frozen=True)
class Outcome:
    """One request: which version served it (or "-"), its status (0: no answer), latency."""

    version: str
    status: int
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class VersionSummary:
    version: str
    requests: int
    errors: int
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    codes: dict[str, int]


@dataclass(frozen=True)
class LoadReport:
    target_rate: float
    duration_s: float
    sent: int
    skipped: int  # scheduled while the concurrency limit was reached
    achieved_rate: float
    versions: tuple[VersionSummary, ...]
    total: VersionSummary
    first_errors: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def table(self) -> str:
        rows = [("version", "requests", "errors", "rate/s", "p50 ms", "p90 ms", "p99 ms", "max ms")]
        for s in (*self.versions, self.total):
            rows.append(
                (
                    s.version,
                    str(s.requests),
                    str(s.errors),
                    f"{s.rate:.1f}",
                    f"{s.p50_ms:.2f}",
                    f"{s.p90_ms:.2f}",
                    f"{s.p99_ms:.2f}",
                    f"{s.max_ms:.2f}",
                )
            )
        lines = [format_table(rows)]
        lines.append(
            f"target {self.target_rate:g}/s for {self.duration_s:g} s: sent {self.sent}, "
            f"achieved {self.achieved_rate:.1f}/s, skipped {self.skipped} at the concurrency limit"
        )
        lines.extend(f"error: {e}" for e in self.first_errors)
        return "\n".join(lines)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of values sorted ascending (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(label: str, outcomes: Sequence[Outcome], duration_s: float) -> VersionSummary:
    latencies = sorted(o.seconds * 1000 for o in outcomes)
    codes: dict[str, int] = {}
    for outcome in outcomes:
        key = str(outcome.status) if outcome.status else "no answer"
        codes[key] = codes.get(key, 0) + 1
    errors = sum(1 for o in outcomes if not 200 <= o.status < 300)
    return VersionSummary(
        version=label,
        requests=len(outcomes),
        errors=errors,
        rate=len(outcomes) / duration_s if duration_s > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        codes=dict(sorted(codes.items())),
    )


def build_report(
    outcomes: Sequence[Outcome], target_rate: float, duration_s: float, skipped: int
) -> LoadReport:
    by_version: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_version.setdefault(outcome.version, []).append(outcome)
    versions = tuple(summarize(v, by_version[v], duration_s) for v in sorted(by_version))
    errors = []
    for outcome in outcomes:
        if outcome.error and outcome.error not in errors:
            errors.append(outcome.error)
    return LoadReport(
        target_rate=target_rate,
        duration_s=duration_s,
        sent=len(outcomes),
        skipped=skipped,
        achieved_rate=len(outcomes) / duration_s if duration_s > 0 else 0.0,
        versions=versions,
        total=summarize("all", outcomes, duration_s),
        first_errors=tuple(errors[:3]),
    )
