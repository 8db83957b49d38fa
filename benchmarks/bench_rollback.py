"""How fast a bad canary loses its traffic: the error-canary scenario, five times.

Run with `make bench`. Starts the local stack (real Triton, gateway, Prometheus and
Alertmanager; demo profile: 1 s scrape and evaluation, 15 s windows), drives 40
requests/s through the gateway, and rolls out digits 3 over stable 1 five times. Each
time, once the canary takes its first step (10%), version 3 starts failing 30% of its
requests; the clock runs from that moment until the controller has set the canary's
weight to 0 at the gateway. Also counts the requests version 3 failed meanwhile (the
gateway's own counter). Prints a table, checks the target (median at most 5 s) and
writes benchmarks/results/rollback.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

from demo_stack import demo_under_load
from modelcanary.examples import digits
from modelcanary.local.demo import Outcome, Scenario
from modelcanary.serving.faults import FaultSpec
from modelcanary.tables import format_table

RUNS = 5
RATE = 40.0
TARGET_MEDIAN_S = 5.0
RESULTS = Path(__file__).parent / "results" / "rollback.json"
SCENARIO = Scenario("error canary", 1, 3, FaultSpec(error_ratio=0.3))


def main() -> int:
    # as in bench_gate.py on purpose: each benchmark is a script of its own, with its arguments
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repo"))
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    digits.build(args.repo, say=lambda line: None)
    outcomes: list[Outcome] = []
    with demo_under_load(args.repo, RATE, "modelcanary-bench-") as (demo, urls):
        for index in range(args.runs):
            outcome = demo.rollout(SCENARIO, urls)
            print(
                f"run {index + 1}: {outcome.phase}, fault to weight 0 "
                f"{outcome.fault_to_zero_s}, failed {outcome.failed_requests}: {outcome.reason}"
            )
            outcomes.append(outcome)
    times = [o.fault_to_zero_s for o in outcomes if o.fault_to_zero_s is not None]
    failed = [o.failed_requests for o in outcomes]
    if len(times) != len(outcomes) or any(o.phase != "RolledBack" for o in outcomes):
        print("FAIL: not every error canary was rolled back", file=sys.stderr)
        return 1
    # a table: each row's cells in the header's order
    # fmt: off
    rows = [["run", "outcome", "fault to weight 0 s", "failed requests", "rolled back by"]]
    for index, o in enumerate(outcomes, 1):
        rows.append([str(index), o.phase, f"{o.fault_to_zero_s:.2f}", str(o.failed_requests),
                     o.reason])
    # fmt: on
    rows.append(
        ["median", "", f"{statistics.median(times):.2f}", f"{statistics.median(failed):g}", ""]
    )
    rows.append(["worst", "", f"{max(times):.2f}", str(max(failed)), ""])
    print(format_table(rows))
    median = statistics.median(times)
    met = median <= TARGET_MEDIAN_S
    print(
        f"target: median fault-to-weight-0 at most {TARGET_MEDIAN_S:g} s: "
        f"{'met' if met else 'NOT met'} ({median:.2f} s)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "scenario": "digits 1 -> 3, 30% errors injected into 3 at the first step (10%)",
                "load_rps": RATE,
                "profile": "demo (1 s scrape and evaluation, 15 s window)",
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "runs": [
                    {
                        "fault_to_weight_zero_s": round(o.fault_to_zero_s or 0, 3),
                        "failed_requests": o.failed_requests,
                        "reason": o.reason,
                    }
                    for o in outcomes
                ],
                "median_s": round(median, 3),
                "worst_s": round(max(times), 3),
                "median_failed_requests": statistics.median(failed),
                "worst_failed_requests": max(failed),
                "target_median_s": TARGET_MEDIAN_S,
                "target_met": met,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
