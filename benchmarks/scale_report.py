"""The operator scale benchmark's (bench_operator_scale.py) measurements and their report:
the counters at one moment, what happened between two of them per tick, one size's result,
the tables it prints and the JSON it writes."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.support.operator_process import Usage

from modelcanary.tables import format_table

PER_ROLLOUT = ("modelcanaries/status", "inferenceservices", "events")  # the rest: per tick


@dataclass(frozen=True)
class Snapshot:
    """Counters at one moment: API requests by (verb, resource), queries, operator usage."""

    at: float
    ticks: float
    requests: Counter[str]
    queries: float
    usage: Usage


@dataclass(frozen=True)
class Window:
    """What happened between two snapshots, and its cost per tick."""

    ticks: int
    seconds: float
    cpu_s: float
    queries: float
    requests: Counter[str]

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Window:
        delta = after.requests - before.requests
        return cls(
            ticks=int(after.ticks - before.ticks),
            seconds=after.at - before.at,
            cpu_s=after.usage.cpu_s - before.usage.cpu_s,
            queries=after.queries - before.queries,
            requests=delta,
        )

    def per_tick(self, value: float) -> float:
        return value / max(self.ticks, 1)

    @property
    def requests_per_tick(self) -> dict[str, float]:
        return {k: round(self.per_tick(v), 2) for k, v in sorted(self.requests.items()) if v}

    @property
    def api_total(self) -> float:
        return round(self.per_tick(sum(self.requests.values())), 1)

    @property
    def writes(self) -> float:
        found = sum(v for k, v in self.requests.items() if k.split()[0] in WRITES)
        return round(self.per_tick(found), 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "seconds": round(self.seconds, 2),
            "tick_period_s": round(self.per_tick(self.seconds), 2),
            "cpu_s_per_tick": round(self.per_tick(self.cpu_s), 4),
            "prometheus_queries_per_tick": round(self.per_tick(self.queries), 2),
            "api_requests_per_tick": self.api_total,
            "api_writes_per_tick": self.writes,
            "api_requests_per_tick_by_verb": self.requests_per_tick,
        }


WRITES = ("PATCH", "PUT", "POST", "CREATE", "UPDATE", "APPLY", "DELETE")


@dataclass
class SizeResult:
    rollouts: int
    interval_s: int
    start_ticks: int  # ticks from the operator's start until every rollout had started
    hold: Window
    changing: Window
    rss_mb: float
    decision_to_isvc_ms: dict[str, float]
    transitions_timed: int
    conflicts: int  # status writes refused with 409 (each ends that tick for all rollouts)
    load: list[float]  # the machine's 1-minute load average as the hold and changing ticks end
    log: list[str] = field(default_factory=list)

    def per_change(self) -> dict[str, float]:
        """The API requests a weight change adds to a hold tick: the changing window's totals
        less its ticks at the hold rate, per rollout (each advanced once)."""
        hold, changing, ticks = self.hold, self.changing, self.changing.ticks
        extra = {
            k: (changing.requests[k] - ticks * hold.per_tick(hold.requests[k])) / self.rollouts
            for k in sorted(set(hold.requests) | set(changing.requests))
            if k.split()[1] in PER_ROLLOUT
        }
        return {k: round(v, 2) for k, v in extra.items()}


def summary_ms(delays: list[float]) -> dict[str, float]:
    if not delays:
        return {}
    ordered = sorted(delays)
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p95": round(ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def tables(results: list[SizeResult]) -> str:
    verbs = sorted({k for r in results for w in (r.hold, r.changing) for k in w.requests_per_tick})
    head = [
        "rollouts",
        "ticks",
        "ticks",
        "tick period s",
        "CPU s/tick",
        "queries/tick",
        "API req/tick",
        "API writes/tick",
        "RSS MB",
        "decision→isvc ms p50/p95/max",
    ]
    rows = [head, ["", "kind", "n", "", "", "", "", "", "", ""]]
    for r in results:
        for kind, w in (("hold", r.hold), ("changing", r.changing)):
            d = r.decision_to_isvc_ms
            rows.append(
                [
                    str(r.rollouts),
                    kind,
                    str(w.ticks),
                    f"{w.seconds / max(w.ticks, 1):.2f}",
                    f"{w.per_tick(w.cpu_s):.3f}",
                    f"{w.per_tick(w.queries):.2f}",
                    f"{w.api_total:g}",
                    f"{w.writes:g}",
                    f"{r.rss_mb:g}" if kind == "hold" else "",
                    f"{d.get('p50')}/{d.get('p95')}/{d.get('max')}" if kind == "hold" and d else "",
                ]
            )
    split = [["rollouts", "ticks", *verbs]]
    for r in results:
        for kind, w in (("hold", r.hold), ("changing", r.changing)):
            split.append(
                [str(r.rollouts), kind, *(f"{w.requests_per_tick.get(v, 0):g}" for v in verbs)]
            )
    per = [v for v in verbs if v.split()[1] in PER_ROLLOUT]
    changes = [["rollouts", *per]]
    for r in results:
        extra = r.per_change()
        changes.append([str(r.rollouts), *(f"{extra.get(v, 0):g}" for v in per)])
    return (
        format_table(rows)
        + "\n\nAPI requests per tick by verb and resource\n"
        + format_table(split)
        + "\n\nAPI requests a weight change adds to a hold tick (per rollout)\n"
        + format_table(changes)
    )


def results_json(
    results: list[SizeResult], failed: list[dict[str, Any]], setup: str, runtime_s: float
) -> str:
    """The JSON document of a run: its SETUP, the machine, notes on the numbers, each size's
    result and the size that FAILED (if one did)."""
    return (
        json.dumps(
            {
                "setup": setup,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()}, shared with other engineers' work "
                "(load_average_1m per size)",
                "notes": [
                    "ticks: the operator's modelcanary_operator_ticks_total; window edges "
                    "cut ticks, so per-tick numbers are +-1 tick",
                    "hold: ticks where every rollout holds; changing: from 1.5 s before "
                    "the first advance until every rollout's new weight is applied",
                    "API requests of the resources modelcanaries, inferenceservices, "
                    "leases and events, watches excluded; leases include the "
                    "kube-apiserver's own identity lease (about 0.1 PUT/s)",
                    "decision_to_isvc: from a transition's timestamp in "
                    "status.state.history to a watch's event with the new "
                    "canaryTrafficPercent",
                ],
                "sizes": [
                    {
                        "rollouts": r.rollouts,
                        "interval_s": r.interval_s,
                        "start_ticks": r.start_ticks,
                        "status_conflicts": r.conflicts,
                        "load_average_1m": r.load,
                        "rss_mb": r.rss_mb,
                        "decision_to_isvc_ms": r.decision_to_isvc_ms,
                        "transitions_timed": r.transitions_timed,
                        "hold": r.hold.to_json(),
                        "changing": r.changing.to_json(),
                        "per_weight_change_beyond_a_hold_tick": r.per_change(),
                        "operator_log": r.log,
                    }
                    for r in results
                ],
                "failed": failed,
                "runtime_s": round(runtime_s, 1),
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
