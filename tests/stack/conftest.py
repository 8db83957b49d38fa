"""Fixtures of the stack tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer
from tests.support.gateway import StartGateway, gateways
from tests.support.triton import serving_digits


@pytest.fixture(scope="module")
def triton(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Triton serving digits 1 and 2 (one per test module); its HTTP base URL."""
    with serving_digits(digits_repo, triton_home, tmp_path_factory.mktemp("run"), [1, 2]) as url:
        yield url


@pytest.fixture(scope="module")
def faulty_triton(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A real Triton serving digits 1 and 2 whose versions fail as a test injects
    (modelcanary.serving.faults; one per test module)."""
    run_dir = tmp_path_factory.mktemp("run")
    with TritonServer(digits_repo, run_dir, triton_home, faults_dir=run_dir / "faults") as server:
        server.start()
        server.load("digits", [1, 2])
        yield server


@pytest.fixture
def start_gateway() -> Iterator[StartGateway]:
    """Start a gateway in front of Triton on a free port from a config dict (routes, and
    limits as keywords); its URL. Stopped after the test."""
    with gateways() as start:
        yield start
