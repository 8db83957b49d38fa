"""Issue 22: a regression model's rollouts judged in shadow, on the real stack (Triton,
gateway, Prometheus, Alertmanager) with the controller as a separate process.

Three versions of `price` (tests.fixture_models:regressor), exported with `modelcanary
export` here: 1 is stable; 2 predicts one standard deviation higher (no errors, the same
speed); 3 is a retrained-alike (every weight within 1e-4 of version 1's). Version 2 is
rolled back while shadowing, before any user request reaches it; version 3 leaves the
shadow phase on evidence (`maxDuration` is longer than `progressDeadline`, so only
`minSamples` pairs can end it) and is promoted.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modelcanary.cli import main
from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.local.controller import LocalRollout
from modelcanary.local.stack import LocalStack
from modelcanary.rollout.state import RolloutState
from modelcanary.serving.triton_home import TritonHome
from tests.conftest import PROJECT, metric_value
from tests.fixture_models import regressor
from tests.support.local_stack import digits_stack
from tests.support.rollout_spec import rollout_spec

pytestmark = pytest.mark.slow
MODELCANARY = str(Path(sys.executable).with_name("modelcanary"))
RATE = 40  # requests per second, each of one sample


def weights(features: np.ndarray) -> dict[int, dict[str, torch.Tensor]]:
    """Version 1's seeded weights, version 2's with the output moved by one standard
    deviation of version 1's predictions on the samples, version 3's within 1e-4."""
    model = regressor()
    base = model.state_dict()
    with torch.no_grad():
        spread = float(model(torch.from_numpy(features)).std())
    moved = {**base, "2.bias": base["2.bias"] + spread}
    noise = torch.Generator().manual_seed(1)
    alike = {k: v + (torch.rand(v.shape, generator=noise) * 2 - 1) * 1e-4 for k, v in base.items()}
    return {1: base, 2: moved, 3: alike}


@pytest.fixture(scope="module")
def price_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("price")
    repo = work / "repo"
    features = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    np.savez(work / "samples.npz", features=features)
    for version, state in weights(features).items():
        torch.save(state, work / f"v{version}.pt")
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(PROJECT)
            model = ["--model", "tests.fixture_models:regressor", "--name", "price"]
            weights_of = ["--weights", str(work / f"v{version}.pt"), "--version", str(version)]
            layout = ["--input", "features:fp32:8", "--output", "price"]
            samples = ["--output-kind", "price=numeric", "--samples", str(work / "samples.npz")]
            golden = ["--golden-samples", "64", "--repo", str(repo), "--seed", "0"]
            code = main(["export", *model, *weights_of, *layout, *samples, *golden])
        assert code == 0
    return repo


@pytest.fixture(scope="module")
def stack(
    price_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("up")
    with digits_stack(price_repo, run_dir, 1, (1, 2, 3), model="price") as local:
        yield local


@pytest.fixture
def load(stack: LocalStack, price_repo: Path) -> Iterator[BackgroundLoad]:
    bodies = request_bodies(price_repo, "price", 1)
    traffic = BackgroundLoad(stack.urls["gateway"], "price", bodies, RATE).start()
    yield traffic
    traffic.stop()


def rollout(stack: LocalStack, tmp_path: Path, canary: int) -> tuple[int, str, RolloutState]:
    """Run `modelcanary rollout start` from version 1 to CANARY to its end."""
    spec = rollout_spec(
        1,
        canary,
        model="price",
        steps=[50, 100],
        interval="2s",
        analysis={
            "errorRatio": {"max": 0.05},
            "noData": {"after": "10s", "action": "pause"},
            "beforeFull": {"maxWait": "4s"},
        },
        # only evidence ends the shadow phase: maxDuration is past the deadline
        shadow={"percent": 100, "minSamples": 200, "maxDuration": "10m"},
    )
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_dir = stack.urls["run_dir"]
    process = subprocess.run(
        [MODELCANARY, "rollout", "start", "-f", str(path), "--run-dir", run_dir, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )
    final = LocalRollout.of(Path(run_dir), "price").store.load() or RolloutState()
    return process.returncode, process.stdout, final


def served(stack: LocalStack, version: str) -> float:
    metrics = f"{stack.urls['gateway']}/metrics"
    return metric_value(metrics, "modelcanary_gateway_requests_total", version=version)


def test_a_moved_regression_is_rolled_back_in_shadow_with_no_user_request(
    stack: LocalStack, load: BackgroundLoad, tmp_path: Path
) -> None:
    code, output, final = rollout(stack, tmp_path, 2)
    assert code == 1 and final.phase == "RolledBack", output
    assert [t.action for t in final.history] == ["shadow", "rollback"], output
    reason = final.history[-1].reason
    assert "shadow comparison:" in reason and "pairs of output 'price' differ" in reason, reason
    assert served(stack, "2") == 0
    metrics = f"{stack.urls['gateway']}/metrics"
    assert metric_value(metrics, "modelcanary_shadow_pairs_total", version="2", kind="numeric") > 0
    assert served(stack, "1") > 0


def test_a_retrained_alike_regression_leaves_shadow_on_evidence_and_is_promoted(
    stack: LocalStack, load: BackgroundLoad, tmp_path: Path
) -> None:
    code, output, final = rollout(stack, tmp_path, 3)
    assert code == 0 and final.phase == "Promoted", output
    steps = [(t.action, t.weight) for t in final.history]
    assert steps == [("shadow", 0), ("start", 50), ("advance", 100), ("promote", 100)], output
    started = final.history[1].reason
    assert "shadow comparison: 0 of" in started and "pairs of output 'price'" in started, started
    metrics = f"{stack.urls['gateway']}/metrics"
    pairs = metric_value(metrics, "modelcanary_shadow_pairs_total", version="3", kind="numeric")
    within = metric_value(metrics, "modelcanary_shadow_agreeing_pairs_total", version="3")
    assert pairs >= 200 and within == pairs
