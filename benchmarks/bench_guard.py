"""What the request guard costs: throughput and latency straight to Triton and through
`modelcanary guard` (the chart's predictor sidecar), over HTTP.

Run with `.venv/bin/python benchmarks/bench_guard.py`. Starts the real Triton (digits
version 1 from the example repository, built if missing) and the guard as its own process
with the chart's flags (the max batch size asked from Triton with the control key), then
drives each with closed-loop clients at concurrency 1 and 8, alternating direct and guard
over several rounds, and reports the median of each. Prints a table and writes
benchmarks/results/guard.json. Everything runs on this machine's cores together.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from bench_gateway import REPO, ROUNDS, SECONDS, WARMUP, median_of
from closed_loop import closed_loop
from modelcanary.examples import digits
from modelcanary.load.generator import request_bodies
from modelcanary.process import free_ports
from modelcanary.serving.triton_server import Endpoints, TritonServer
from modelcanary.tables import format_table
from modelcanary.waiting import wait_until

RESULTS = Path(__file__).parent / "results" / "guard.json"


def start_guard(endpoints: Endpoints, key: str) -> tuple[subprocess.Popen[str], str]:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelcanary",
            "guard",
            "--upstream",
            endpoints.http,
            "--model",
            "digits",
            "--control-key-env",
            "TRITON_KEY",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TRITON_KEY": key},
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("guard listening on "):
        process.kill()
        raise SystemExit(f"the guard did not start: {first}{process.stdout.read()}")
    return process, first.split()[-1]


def main() -> None:
    if not (REPO / "digits" / "1").is_dir():
        digits.build(REPO, say=lambda line: None)
    bodies = request_bodies(REPO, "digits")
    rows: list[dict[str, object]] = []
    with (
        tempfile.TemporaryDirectory(prefix="modelcanary-bench-") as scratch,
        TritonServer(REPO, Path(scratch) / "triton") as triton,
    ):
        endpoints = triton.start()
        triton.load("digits", [1])
        guard, url = start_guard(endpoints, triton.control_key)
        targets = {
            "direct": f"{endpoints.http}/v2/models/digits/versions/1/infer",
            "guard": f"{url}/v2/models/digits/versions/1/infer",
        }
        try:
            for concurrency in (1, 8):
                rounds: dict[str, list[dict[str, float]]] = {p: [] for p in targets}
                for _ in range(ROUNDS):  # alternate, so drifts in machine load hit both
                    for path, target in targets.items():
                        rounds[path].append(
                            uvloop.run(closed_loop(target, bodies, concurrency, SECONDS, WARMUP))
                        )
                for path, results in rounds.items():
                    rows.append({"path": path, "concurrency": concurrency, **median_of(results)})
        finally:
            guard.send_signal(signal.SIGTERM)
            wait_until(lambda: guard.poll() is not None, 10)
    table = [("path", "concurrency", "requests", "errors", "req/s", "p50 ms", "p99 ms")]
    for r in rows:
        table.append(
            (
                str(r["path"]),
                str(r["concurrency"]),
                str(r["requests"]),
                str(r["errors"]),
                f"{r['throughput']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
            )
        )
    print(f"median of {ROUNDS} rounds of {SECONDS:g} s each")
    print(format_table(table))
    by = {(r["path"], r["concurrency"]): r for r in rows}
    checks = {}
    for concurrency in (1, 8):
        direct, through = by[("direct", concurrency)], by[("guard", concurrency)]
        added = float(through["p50_ms"]) - float(direct["p50_ms"])  # type: ignore[arg-type]
        kept = float(through["throughput"]) / float(direct["throughput"])  # type: ignore[arg-type]
        checks[f"c{concurrency}_added_p50_ms"] = added
        checks[f"c{concurrency}_throughput_kept"] = kept
        print(
            f"concurrency {concurrency}: the guard adds {added:.2f} ms to p50, "
            f"keeps {kept:.0%} of direct throughput"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "guard",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "seconds_per_round": SECONDS,
                "rounds": ROUNDS,
                "rows": rows,
                "checks": checks,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {RESULTS}")


if __name__ == "__main__":
    main()
