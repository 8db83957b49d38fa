"""The load generator: its pure summary, and a run through the gateway to the real Triton."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from modelcanary.load.generator import request_bodies, run_load
from modelcanary.load.report import Outcome, build_report, percentile
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 100) == 100 and percentile([], 50) == 0
    assert percentile([7.0], 99) == 7.0


def test_report_groups_by_serving_version() -> None:
    outcomes = [Outcome("1", 200, 0.001)] * 8 + [Outcome("2", 500, 0.004, "500: boom")] * 2
    outcomes.append(Outcome("-", 0, 0.01, "ClientConnectorError: refused"))
    report = build_report(outcomes, target_rate=11, duration_s=1.0, skipped=3)
    assert [(v.version, v.requests, v.errors) for v in report.versions] == [
        ("-", 1, 1),
        ("1", 8, 0),
        ("2", 2, 2),
    ]
    assert report.total.requests == 11 and report.total.errors == 3
    assert report.versions[2].codes == {"500": 2} and report.versions[0].codes == {"no answer": 1}
    assert report.first_errors == ("500: boom", "ClientConnectorError: refused")
    assert "skipped 3 at the concurrency limit" in report.table()


def test_bodies_come_from_the_holdout_else_the_golden_samples(
    digits_repo: Path, tmp_path: Path
) -> None:
    """Real inputs like a user's: the 360 held-out digits (live inputs then match the
    version's input profile); a version without a holdout gives its 32 golden samples."""
    bodies = request_bodies(digits_repo, "digits")
    assert len(bodies) == 360
    assert bodies[0].startswith(
        b'{"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32"'
    )
    repo = tmp_path / "model_repo"
    shutil.copytree(digits_repo / "digits" / "1", repo / "digits" / "1")
    (repo / "digits" / "1" / "holdout.npz").unlink()
    assert len(request_bodies(repo, "digits")) == 32


@pytest.fixture(scope="module")
def gateway_url(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TritonServer]]:
    run_dir = tmp_path_factory.mktemp("run")
    with TritonServer(digits_repo, run_dir, triton_home, faults_dir=run_dir / "faults") as triton:
        endpoints = triton.start()
        triton.load("digits", [1, 2])
        upstreams = {"1": endpoints.http, "2": endpoints.http}
        config = parse_config(
            {
                "models": {
                    "digits": {"stable": "1", "upstreams": upstreams, "weights": {"1": 50, "2": 50}}
                },
                "retry": {"enabled": False},  # the load's report shows the canary's failures
            },
            "test",
        )
        server = GatewayServer(Gateway(config, "token"))
        try:
            yield server.start(), triton
        finally:
            server.stop()


@pytest.mark.slow
def test_load_reports_each_version_and_its_failures(
    gateway_url: tuple[str, TritonServer], digits_repo: Path
) -> None:
    url, triton = gateway_url
    assert triton.faults_dir is not None
    set_faults(triton.faults_dir, "digits", 2, FaultSpec(error_ratio=1.0))
    try:
        report = asyncio.run(run_load(url, "digits", request_bodies(digits_repo, "digits"), 100, 2))
    finally:
        set_faults(triton.faults_dir, "digits", 2, FaultSpec())
    by_version = {v.version: v for v in report.versions}
    assert report.sent + report.skipped == 200
    assert set(by_version) == {"1", "2"}
    assert by_version["1"].errors == 0 and by_version["1"].codes == {
        "200": by_version["1"].requests
    }
    assert by_version["2"].errors == by_version["2"].requests > 0
    assert "injected fault: digits:2" in report.first_errors[0]
