"""bench_gateway's optional rows: Triton's own load generator, `perf_analyzer` (the binary
in the tritonclient 2.34 wheel; README "Benchmarks" says how to install it), against the
gateway and Triton direct, over gRPC and HTTP, at concurrency 1 and 8.

The binary is $PERF_ANALYZER, else `perf_analyzer` on PATH; without it the rows are
skipped. perf_analyzer asks for the model's config before it sends: the gateway answers
its public part; Triton keeps it to the stack's control key, which perf_analyzer sends
over HTTP (-H) but not over gRPC (2.34 ignores -H there), so Triton direct over gRPC is
reported as refused. Its stability criterion is loosened (-s): on cores shared by the
clients, the gateway and Triton, windows rarely agree within the default 10%.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# make setup installs it in the venv (scripts/install-perf-analyzer.sh), beside python
BESIDE_PYTHON = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))

WINDOW_MS = int(os.environ.get("BENCH_PA_WINDOW_MS", "3000"))


def find_perf_analyzer() -> str | None:
    """The perf_analyzer binary to run, or None."""
    return os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer", path=BESIDE_PYTHON)


def perf_analyzer(
    binary: str, address: str, protocol: str, headers: dict[str, str]
) -> list[dict[str, float]] | str:
    """perf_analyzer's rows (concurrency, throughput, p50 and p99 in ms) for digits at
    `address` (host:port), or why it gave none (its last lines)."""
    with tempfile.TemporaryDirectory(prefix="modelcanary-pa-") as scratch:
        report = Path(scratch) / "report.csv"
        options = f"-m digits -u {address} -i {protocol} --concurrency-range 1:8:7 -s 1000"
        command = [binary, *options.split(), "-p", str(WINDOW_MS), "-f", str(report)]
        for name, value in headers.items():
            command += ["-H", f"{name}:{value}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"perf_analyzer did not run: {exc}"
        if done.returncode != 0 or not report.is_file():
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            return f"exit {done.returncode}: {said[-1] if said else 'no output'}"
        with report.open() as lines:
            return [
                {
                    "concurrency": float(row["Concurrency"]),
                    "throughput": float(row["Inferences/Second"]),
                    "p50_ms": float(row["p50 latency"]) / 1000,
                    "p99_ms": float(row["p99 latency"]) / 1000,
                }
                for row in csv.DictReader(lines)
            ]
