"""Fixtures of the stack tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelcanary.load.generator import BackgroundLoad
from modelcanary.local.stack import LocalStack
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer
from tests.support.gateway import StartGateway, gateways
from tests.support.local_rollouts import MODELCANARY, Start
from tests.support.local_stack import digits_stack, steady_load
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


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    digits_repo: Path,
    triton_home: TritonHome,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalStack]:
    """A local stack (`modelcanary up`) of digits 1 to 5 for a test module, its `STABLE`
    version taking all the traffic (test modules with a stack of their own override this)."""
    stable: int = request.module.STABLE
    run_dir = tmp_path_factory.mktemp("up")
    with digits_stack(digits_repo, run_dir, stable, (1, 2, 3, 4, 5)) as local:
        yield local


@pytest.fixture
def load(stack: LocalStack, digits_repo: Path) -> Iterator[BackgroundLoad]:
    """Steady load of digits on the module's `stack`, stopped after the test."""
    with steady_load(stack, digits_repo) as traffic:
        yield traffic


@pytest.fixture
def controller(stack: LocalStack, tmp_path: Path) -> Iterator[Start]:
    """Start `modelcanary rollout start -f` on a spec; every process is reaped after."""
    processes: list[subprocess.Popen[str]] = []

    def start(document: dict[str, object]) -> subprocess.Popen[str]:
        path = tmp_path / "canary.yaml"
        path.write_text(yaml.safe_dump(document))
        run_dir = stack.urls["run_dir"]
        process = subprocess.Popen(
            [MODELCANARY, "rollout", "start", "-f", str(path), "--run-dir", run_dir, "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)
