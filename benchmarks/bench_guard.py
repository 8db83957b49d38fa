"""What the request guard costs: throughput and latency straight to Triton and through
`modelcanary guard` (the chart's predictor sidecar), over HTTP and KServe v2 gRPC.

Run with `.venv/bin/python benchmarks/bench_guard.py`. Starts the real Triton (digits
version 1 from the example repository, built if missing) and the guard as its own process
with the chart's flags (the max batch size asked from Triton with the control key), then
drives each with closed-loop clients at concurrency 1 and 8, alternating direct and guard
over several rounds, and reports the median of each. Prints a table and writes
benchmarks/results/guard.json. Everything runs on this machine's cores together.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench_gateway import REPO, ROUNDS, SECONDS, WARMUP, median_of, overhead
from closed_loop import closed_loop, grpc_closed_loop, grpc_requests
from modelcanary.examples import digits
from modelcanary.load.generator import request_bodies
from modelcanary.process import free_ports
from modelcanary.serving.triton_server import Endpoints, TritonServer
from modelcanary.tables import format_table
from modelcanary.waiting import wait_until

RESULTS = Path(__file__).parent / "results" / "guard.json"


def start_guard(endpoints: Endpoints, key: str) -> tuple[subprocess.Popen[str], str, str]:
    """The guard as a process; it, its HTTP URL and its gRPC address."""
    port, grpc_port = free_ports(2)
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
            "--grpc-upstream",
            endpoints.grpc,
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
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
    if not process.stdout.readline().startswith("guard's gRPC listening on "):
        process.kill()
        raise SystemExit(f"the guard's gRPC did not start: {process.stdout.read()}")
    return process, first.split()[-1], f"127.0.0.1:{grpc_port}"


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
        guard, url, guard_grpc = start_guard(endpoints, triton.control_key)
        grpc_bodies = grpc_requests(bodies, "digits")
        path = "/v2/models/digits/versions/1/infer"
        runs: dict[tuple[str, str], Callable[[int], dict[str, float]]] = {
            ("direct", "http"): lambda c: uvloop.run(
                closed_loop(endpoints.http + path, bodies, c, SECONDS, WARMUP)
            ),
            ("guard", "http"): lambda c: uvloop.run(
                closed_loop(url + path, bodies, c, SECONDS, WARMUP)
            ),
            ("direct", "grpc"): lambda c: asyncio.run(
                grpc_closed_loop(endpoints.grpc, grpc_bodies, "1", c, SECONDS, WARMUP)
            ),
            ("guard", "grpc"): lambda c: asyncio.run(
                grpc_closed_loop(guard_grpc, grpc_bodies, "1", c, SECONDS, WARMUP)
            ),
        }
        try:
            for concurrency in (1, 8):
                rounds: dict[tuple[str, str], list[dict[str, float]]] = {r: [] for r in runs}
                for _ in range(ROUNDS):  # alternate, so drifts in machine load hit both
                    for key, run in runs.items():
                        rounds[key].append(run(concurrency))
                for (via, protocol), results in rounds.items():
                    rows.append(
                        {
                            "path": via,
                            "protocol": protocol,
                            "concurrency": concurrency,
                            **median_of(results),
                        }
                    )
        finally:
            guard.send_signal(signal.SIGTERM)
            wait_until(lambda: guard.poll() is not None, 10)
    table = [("path", "protocol", "concurrency", "requests", "errors", "req/s", "p50 ms", "p99 ms")]
    for r in rows:
        table.append(
            (
                str(r["path"]),
                str(r["protocol"]),
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
    checks = overhead(rows, "guard")
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
