"""Triton's perf_analyzer (the binary of the tritonclient 2.34 wheel, README "Benchmarks")
through the gateway, over gRPC and HTTP: it reads the gateway's public model config, sends,
and every request it sends is answered and counted. Skipped without the binary
($PERF_ANALYZER, or perf_analyzer beside python or on PATH; `make setup` installs it with
scripts/install-perf-analyzer.sh): it is not a PyPI install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack.test_gateway_grpc import REQUESTS, Start, metric, start  # noqa: F401

# make setup installs it in the venv (scripts/install-perf-analyzer.sh), beside python
BESIDE_PYTHON = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))

pytestmark = pytest.mark.slow
BINARY = os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer", path=BESIDE_PYTHON)


@pytest.mark.skipif(BINARY is None, reason="no perf_analyzer ($PERF_ANALYZER or on PATH)")
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_runs_through_the_gateway(start: Start, protocol: str) -> None:  # noqa: F811
    url, address = start({"1": 50, "2": 50})
    target = address if protocol == "grpc" else url.removeprefix("http://")
    assert BINARY is not None
    options = f"-m digits -u {target} -i {protocol} -s 1000 --concurrency-range 2"
    count = ["--measurement-mode", "count_windows", "--measurement-request-count", "50"]
    done = subprocess.run(
        [BINARY, *options.split(), *count],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Request concurrency: 2" in done.stdout and "Throughput:" in done.stdout
    answered = {v: metric(url, REQUESTS, version=v, code="200") for v in ("1", "2")}
    assert answered["1"] > 0 and answered["2"] > 0 and sum(answered.values()) >= 150, answered
    errors = sum(metric(url, REQUESTS, version=v, code=c) for v in "12" for c in ("500", "502"))
    assert errors == 0
