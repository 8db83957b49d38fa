"""Throughput and latency straight to Triton and through the gateway.

Run with `make bench`. Starts the real Triton (digits version 1 from the example
repository, built if missing) and `modelcanary gateway` as its own process, then drives
each with closed-loop clients (each sends its next request when the last one is
answered), over HTTP and over gRPC (KServe v2 ModelInfer, raw tensors, one channel), at
concurrency 1 and 8, alternating direct and gateway over several rounds
and reporting the median of each. Prints a table, checks the targets (the gateway adds at
most 1 ms to p50 and keeps at least 70% of direct throughput at concurrency 8, over HTTP;
gRPC's numbers are reported) and writes
benchmarks/results/gateway.json. With Triton's perf_analyzer installed
(benchmarks/perf_analyzer_rows.py), its rows too. Everything runs on this machine's cores together.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvloop

from closed_loop import closed_loop, grpc_closed_loop, grpc_requests
from modelcanary.examples import digits
from modelcanary.http.triton_control import CONTROL_HEADER
from modelcanary.load.generator import request_bodies
from modelcanary.process import free_ports
from modelcanary.serving.triton_server import Endpoints, TritonServer
from modelcanary.tables import format_table
from perf_analyzer_rows import WINDOW_MS, find_perf_analyzer, perf_analyzer

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP = 1.0
RESULTS = Path(__file__).parent / "results" / "gateway.json"
REPO = Path(os.environ.get("BENCH_REPO", "model_repo"))


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over rounds (requests and errors are summed)."""
    merged = {key: statistics.median(r[key] for r in results) for key in results[0]}
    merged["requests"] = sum(r["requests"] for r in results)
    merged["errors"] = sum(r["errors"] for r in results)
    merged["rounds"] = len(results)
    return merged


def overhead(rows: list[dict[str, object]], through: str) -> dict[str, float]:
    """What `through` (the rows' path) adds to p50 and keeps of direct throughput, per
    protocol and concurrency (http's names bare, grpc's prefixed), printed too."""
    by = {(r["path"], r["protocol"], r["concurrency"]): r for r in rows}
    checks = {}
    for protocol in ("http", "grpc"):
        for concurrency in (1, 8):
            direct = by[("direct", protocol, concurrency)]
            via = by[(through, protocol, concurrency)]
            added = float(via["p50_ms"]) - float(direct["p50_ms"])  # type: ignore[arg-type]
            kept = float(via["throughput"]) / float(direct["throughput"])  # type: ignore[arg-type]
            prefix = "" if protocol == "http" else "grpc_"
            checks[f"{prefix}c{concurrency}_added_p50_ms"] = added
            checks[f"{prefix}c{concurrency}_throughput_kept"] = kept
            print(
                f"{protocol} concurrency {concurrency}: the {through} adds {added:.2f} ms to "
                f"p50, keeps {kept:.0%} of direct throughput"
            )
    return checks


def start_gateway(endpoints: Endpoints, work: Path) -> tuple[subprocess.Popen[str], str, str]:
    """The gateway's process, its HTTP URL and its gRPC address. Its config names the
    repository, so it answers the model's public config (perf_analyzer asks for it)."""
    port, grpc_port = free_ports(2)
    config = work / "gateway.json"
    route = {
        "stable": "1",
        "upstreams": {"1": endpoints.http},
        "grpc_upstreams": {"1": endpoints.grpc},
    }
    config.write_text(
        json.dumps({"models": {"digits": route}, "shadow": {"repository": str(REPO.resolve())}})
    )
    listen = f"--listen 127.0.0.1:{port} --grpc-listen 127.0.0.1:{grpc_port}"
    argv = [sys.executable, *f"-m modelcanary gateway {listen}".split()]
    argv += ["--config", str(config), "--admin-token-file", str(work / "token")]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                return process, url, f"127.0.0.1:{grpc_port}"
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(
        f"the gateway did not start: {process.stderr.read() if process.stderr else ''}"
    )


def main() -> None:
    if not (REPO / "digits" / "1").is_dir():
        digits.build(REPO, say=lambda line: None)
    bodies = request_bodies(REPO, "digits")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-") as scratch:
        work = Path(scratch)
        with TritonServer(REPO, work / "triton") as triton:
            (work / "triton").mkdir(exist_ok=True)
            endpoints = triton.start()
            triton.load("digits", [1])
            gateway, gateway_url, gateway_grpc = start_gateway(endpoints, work)
            grpc_bodies = grpc_requests(bodies, "digits")
            try:
                direct_http = f"{endpoints.http}/v2/models/digits/versions/1/infer"
                gateway_http = f"{gateway_url}/v2/models/digits/infer"
                runs: dict[tuple[str, str], Callable[[int], dict[str, float]]] = {
                    ("direct", "http"): lambda c: uvloop.run(
                        closed_loop(direct_http, bodies, c, SECONDS, WARMUP)
                    ),
                    ("gateway", "http"): lambda c: uvloop.run(
                        closed_loop(gateway_http, bodies, c, SECONDS, WARMUP)
                    ),
                    ("direct", "grpc"): lambda c: asyncio.run(
                        grpc_closed_loop(endpoints.grpc, grpc_bodies, "1", c, SECONDS, WARMUP)
                    ),
                    ("gateway", "grpc"): lambda c: asyncio.run(
                        grpc_closed_loop(gateway_grpc, grpc_bodies, "", c, SECONDS, WARMUP)
                    ),
                }
                for concurrency in (1, 8):
                    rounds: dict[tuple[str, str], list[dict[str, float]]] = {p: [] for p in runs}
                    for _ in range(ROUNDS):  # alternate, so drifts in machine load hit all
                        for key, run in runs.items():
                            rounds[key].append(run(concurrency))
                    for (path, protocol), results in rounds.items():
                        row = {"path": path, "protocol": protocol, "concurrency": concurrency}
                        rows.append({**row, **median_of(results)})
                tool = perf_analyzer_rows(triton, endpoints, gateway_url, gateway_grpc)
            finally:
                gateway.send_signal(signal.SIGTERM)
                gateway.wait(10)

    table = [("path", "protocol", "concurrency", "requests", "errors", "req/s", "p50 ms", "p99 ms")]
    print(f"median of {ROUNDS} rounds of {SECONDS:g} s each")
    for r in rows:
        named = [str(r[key]) for key in ("path", "protocol", "concurrency", "requests", "errors")]
        speed = [f"{r['throughput']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
        table.append((*named, *speed))
    print(format_table(table))
    checks = overhead(rows, "gateway")
    verdict = {
        "added_p50_at_most_1ms": checks["c1_added_p50_ms"] <= 1.0
        and checks["c8_added_p50_ms"] <= 1.0,
        "keeps_70_percent_at_c8": checks["c8_throughput_kept"] >= 0.7,
    }
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in verdict.items()))
    print_perf_analyzer(tool)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "gateway",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "seconds_per_round": SECONDS,
                "rounds": ROUNDS,
                "rows": rows,
                "checks": checks,
                "targets": verdict,
                "perf_analyzer": tool,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {RESULTS}")


def perf_analyzer_rows(
    triton: TritonServer, endpoints: Endpoints, gateway_url: str, gateway_grpc: str
) -> dict[str, Any]:
    """perf_analyzer's rows, each path and protocol in turn; or why there are none."""
    binary = find_perf_analyzer()
    if binary is None:
        return {"skipped": "no perf_analyzer ($PERF_ANALYZER or on PATH)"}
    key = {CONTROL_HEADER: triton.control_key}  # Triton's config is a control API
    targets = [
        ("direct", "grpc", endpoints.grpc, {}),
        ("direct", "http", endpoints.http.removeprefix("http://"), key),
        ("gateway", "grpc", gateway_grpc, {}),
        ("gateway", "http", gateway_url.removeprefix("http://"), {}),
    ]
    rows: list[dict[str, object]] = []
    refused: dict[str, str] = {}
    for path, protocol, address, headers in targets:
        found = perf_analyzer(binary, address, protocol, headers)
        if isinstance(found, str):
            refused[f"{path} {protocol}"] = found
        else:
            rows += [{"path": path, "protocol": protocol, **row} for row in found]
    return {"binary": binary, "window_ms": WINDOW_MS, "rows": rows, "refused": refused}


def print_perf_analyzer(tool: dict[str, Any]) -> None:
    if "skipped" in tool:
        print(f"perf_analyzer rows skipped: {tool['skipped']}")
        return
    table = [("path", "protocol", "concurrency", "req/s", "p50 ms", "p99 ms")]
    for r in tool["rows"]:
        speed = [f"{r['throughput']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
        table.append((r["path"], r["protocol"], f"{r['concurrency']:.0f}", *speed))
    print(f"perf_analyzer ({tool['window_ms']} ms windows)")
    print(format_table(table))
    for target, why in tool["refused"].items():
        print(f"perf_analyzer {target}: {why}")


if __name__ == "__main__":
    main()
