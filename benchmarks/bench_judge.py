"""What one `judge(...)` costs: median CPU per call on realistic inputs (issue 26).

    python benchmarks/bench_judge.py [--rounds 15] [--calls 40]

Each case is one tick's evidence of a rollout at a 20% step: 3,000 canary and 12,000
stable requests since it began, stable at 0.5% errors and lognormal latency (median 20 ms,
P99 64 ms) in the 29 `LATENCY_BUCKETS`, with the production spec's defaults (both
versus-stable tests on). The canary is healthy, errs at 2%, or has a slow tail (5% of its
requests ten times slower). Per case, `rounds` rounds of `calls` calls, timed with the
process's CPU clock; the median round's mean is the cost of one call. Every call has
counts of its own (the canary's requests grow by one from call to call), so nothing a
previous call computed is reused. The same calls with
the numpy implementation the closed form replaced (tests/pure/sequential_reference.py)
give the before column. Goal: at most 0.5 ms. Prints a table and writes
benchmarks/results/judge.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]  # tests.pure, and this modelcanary

import tests.pure.sequential_reference as reference  # noqa: E402

from modelcanary.metrics_contract import LATENCY_BUCKETS  # noqa: E402
from modelcanary.rollout import judge as judge_module  # noqa: E402
from modelcanary.rollout.evidence import Evidence  # noqa: E402
from modelcanary.rollout.judge import Verdict, judge  # noqa: E402
from modelcanary.rollout.ports import Counts, Observations, VersionStats  # noqa: E402
from modelcanary.rollout.spec import parse_spec  # noqa: E402
from modelcanary.tables import format_table  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "judge.json"
CANARY, STABLE = 3_000, 12_000
GOAL_MS = 0.5
SPEC = parse_spec(
    {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}}, "bench"
)


def _lognormal_cdf(seconds: float, median: float, sigma: float = 0.5) -> float:
    return 0.5 * (1 + math.erf(math.log(seconds / median) / (sigma * math.sqrt(2))))


def _counts(requests: int, error_ratio: float, slow_share: float = 0.0) -> Counts:
    """Expected cumulative counts: lognormal latency, `slow_share` ten times slower."""
    buckets = tuple(
        (
            le,
            round(
                requests
                * (
                    (1 - slow_share) * _lognormal_cdf(le, 0.02)
                    + slow_share * _lognormal_cdf(le, 0.2)
                )
            ),
        )
        for le in LATENCY_BUCKETS
    )
    return Counts(float(requests), round(requests * error_ratio), buckets, float(requests))


CASES: dict[str, Callable[[int], Counts]] = {
    "healthy": lambda n: _counts(n, 0.005),
    "errors 2% vs 0.5%": lambda n: _counts(n, 0.02),
    "slow tail (5% 10x)": lambda n: _counts(n, 0.005, slow_share=0.05),
}


def _calls(canary: Callable[[int], Counts], count: int) -> Iterator[Callable[[], Verdict]]:
    """`count` judge calls on the case's counts, the canary's requests from 3,000 up."""
    stable = _counts(STABLE, 0.005)
    for k in range(count):
        counts = canary(CANARY + k)
        evidence = Evidence(stable=stable, canary=counts, stable_since_canary=0.0)
        seen = Observations(
            stable=VersionStats(400.0, 2.0, 0.064, stable),
            canary=VersionStats(100.0, 1.0, 0.064, counts),
        )
        yield partial(judge, SPEC, seen, evidence, weight=20)


@contextmanager
def _sequential(module: object) -> Iterator[None]:
    """The judge with another implementation of the sequential tests."""
    kept = judge_module.seq
    judge_module.seq = module  # type: ignore[assignment]
    try:
        yield
    finally:
        judge_module.seq = kept


def _median_ms(case: Callable[[int], Counts], rounds: int, calls: int) -> tuple[float, Verdict]:
    """The median over rounds of the mean CPU per call in ms, and the first verdict."""
    every = list(_calls(case, rounds * calls + 1))
    first = every.pop()()  # warm
    means = []
    for r in range(rounds):
        start = time.process_time_ns()
        for call in every[r * calls : (r + 1) * calls]:
            call()
        means.append((time.process_time_ns() - start) / calls / 1e6)
    return statistics.median(means), first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    rows = []
    for name, case in CASES.items():
        with _sequential(reference):
            before, before_verdict = _median_ms(case, args.rounds, max(args.calls // 8, 1))
        after, verdict = _median_ms(case, args.rounds, args.calls)
        same = [c.result for c in verdict.checks] == [c.result for c in before_verdict.checks]
        rows.append(
            {
                "case": name,
                "verdict": verdict.result,
                "same_verdict": same,
                "numpy_ms": round(before, 3),
                "closed_form_ms": round(after, 3),
            }
        )
    # a table: each row's cells in the header's order
    # fmt: off
    table = [["case", "verdict", "same checks", "numpy ms", "closed form ms", "speed-up"]]
    for r in rows:
        table.append([str(r["case"]), str(r["verdict"]), "yes" if r["same_verdict"] else "NO",
                      f"{r['numpy_ms']:.2f}", f"{r['closed_form_ms']:.3f}",
                      f"{float(r['numpy_ms']) / float(r['closed_form_ms']):.0f}x"])
    # fmt: on
    print(format_table(table))
    worst = max(float(r["closed_form_ms"]) for r in rows)
    met = worst <= GOAL_MS
    verdict = "met" if met else "NOT met"
    print(f"goal: at most {GOAL_MS} ms per judge: {verdict} (worst {worst:.3f} ms)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    what = (
        f"median CPU per judge(...) call, {CANARY} canary and {STABLE} stable requests since "
        f"the rollout began, {len(LATENCY_BUCKETS)} latency buckets, production spec defaults; "
        "numpy: the implementation before the closed form"
    )
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    report = {"what": what, "rounds": args.rounds, "calls": args.calls, "machine": machine}
    RESULTS.write_text(json.dumps({**report, "goal_ms": GOAL_MS, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0 if met and all(r["same_verdict"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
