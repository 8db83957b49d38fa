"""The checks before traffic against the real Triton behind the gateway: the golden-sample
check (export fidelity) and the holdout gate (the canary against stable on labelled data).

Versions: 1 (about 91% held-out accuracy), 2 (about 98%), 5 (trained with classes 3 and 8
swapped: about 76%)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelcanary.adapters.golden_check import run_golden_check
from modelcanary.adapters.holdout_gate import run_holdout_gate
from modelcanary.adapters.repo_reader import CheckUnavailable, LocalRepository
from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from modelcanary.modelrepo.manifest import sha256_file
from modelcanary.process import free_ports
from modelcanary.rollout.ports import GateResult
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer
from tests.conftest import metric_value

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """Gateway URL, and a repository where version 2's golden file is version 1's: a
    canary whose served answers differ from 'its' PyTorch outputs (a broken export)."""
    repo = tmp_path_factory.mktemp("golden") / "model_repo"
    shutil.copytree(digits_repo, repo)
    mismatched = tmp_path_factory.mktemp("mismatch") / "model_repo"
    shutil.copytree(digits_repo, mismatched)
    shutil.copy(digits_repo / "digits/1/golden.npz", mismatched / "digits/2/golden.npz")
    manifest = mismatched / "digits/2/manifest.json"  # pinned as if exported so
    data = json.loads(manifest.read_text())
    data["files"]["2/golden.npz"] = sha256_file(mismatched / "digits/2/golden.npz")
    manifest.write_text(json.dumps(data))
    with TritonServer(repo, tmp_path_factory.mktemp("run"), triton_home) as triton:
        endpoints = triton.start()
        triton.load("digits", [1, 2, 5])
        upstreams = {version: endpoints.http for version in ("1", "2", "5")}
        config = parse_config({"models": {"digits": {"stable": "1", "upstreams": upstreams}}}, "t")
        gateway = GatewayServer(Gateway(config, "token"))
        try:
            yield gateway.start(), LocalRepository(mismatched)
        finally:
            gateway.stop()


def test_a_faithful_canary_passes(served: tuple[str, LocalRepository], digits_repo: Path) -> None:
    url, _ = served
    result = run_golden_check(url, LocalRepository(digits_repo), "digits", "2")
    assert result.passed and result.worst.startswith("32 samples, max abs err")


def test_the_check_is_not_counted_as_the_canarys_traffic(
    served: tuple[str, LocalRepository], digits_repo: Path
) -> None:
    """Its requests are probes: a canary with no users must show no requests, or a rollout
    with no traffic would advance on the golden samples alone."""
    url, _ = served
    run_golden_check(url, LocalRepository(digits_repo), "digits", "2")
    requests = metric_value(f"{url}/metrics", "modelcanary_gateway_requests_total", version="2")
    probes = metric_value(
        f"{url}/metrics", "modelcanary_gateway_probe_requests_total", version="2", code="200"
    )
    assert requests == 0 and probes > 0


def test_a_canary_that_answers_differently_fails_with_the_worst_error(
    served: tuple[str, LocalRepository],
) -> None:
    url, mismatched = served
    result = run_golden_check(url, mismatched, "digits", "2")
    assert not result.passed
    assert result.worst.startswith("output 'logits' off by") and "over 32 samples" in result.worst


def test_an_unreachable_canary_is_no_verdict(digits_repo: Path) -> None:
    (port,) = free_ports(1)
    repo = LocalRepository(digits_repo)
    with pytest.raises(CheckUnavailable, match="is unreachable"):
        run_golden_check(f"http://127.0.0.1:{port}", repo, "digits", "2")
    with pytest.raises(CheckUnavailable, match="no golden samples for digits:9"):
        run_golden_check(f"http://127.0.0.1:{port}", repo, "digits", "9")
    with pytest.raises(CheckUnavailable, match="is unreachable"):
        run_holdout_gate((f"http://127.0.0.1:{port}",) * 2, repo, "digits", ("1", "2"), 0.01, 0.95)


def gate(url: str, repo: Path, stable: str, canary: str) -> GateResult:
    return run_holdout_gate(
        (url, url), LocalRepository(repo), "digits", (stable, canary), 0.01, 0.95
    )


def test_a_canary_with_two_classes_swapped_is_worse_than_stable(
    served: tuple[str, LocalRepository], digits_repo: Path
) -> None:
    """Issue 16: version 5 (classes 3 and 8 swapped), no errors and fast, is worse than
    stable version 2 on the labelled holdout by far more than the margin."""
    url, _ = served
    result = gate(url, digits_repo, "2", "5")
    assert result.outcome == "worse", result.summary
    n = result.numbers
    assert n["holdout_samples"] == 360 and n["holdout_margin"] == 0.01
    assert 0.70 < float(n["holdout_canary"]) < 0.82 and float(n["holdout_stable"]) > 0.95
    assert float(n["holdout_difference_high"]) < -0.1
    assert "canary - stable" in result.summary and "margin 0.01: worse" in result.summary


def test_an_honest_improvement_passes_the_gate(
    served: tuple[str, LocalRepository], digits_repo: Path
) -> None:
    url, _ = served
    result = gate(url, digits_repo, "1", "2")
    assert result.outcome == "not worse", result.summary
    assert float(result.numbers["holdout_difference"]) > 0.03


def test_the_gate_is_not_counted_as_user_traffic(
    served: tuple[str, LocalRepository], digits_repo: Path
) -> None:
    url, _ = served
    gate(url, digits_repo, "2", "5")
    requests = metric_value(f"{url}/metrics", "modelcanary_gateway_requests_total", version="5")
    assert requests == 0


def test_a_holdout_changed_after_export_is_refused(digits_repo: Path, tmp_path: Path) -> None:
    """The holdout is pinned by its sha256 in the manifest: a swapped file is no verdict."""
    repo = tmp_path / "model_repo"
    shutil.copytree(digits_repo, repo)
    shutil.copy(repo / "digits/2/golden.npz", repo / "digits/2/holdout.npz")
    with pytest.raises(CheckUnavailable, match="does not match the sha256 in its manifest"):
        gate("http://127.0.0.1:1", repo, "2", "5")


def test_versions_without_a_holdout_are_not_checked_never_passed(
    digits_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "model_repo"
    shutil.copytree(digits_repo, repo)
    for version in ("2", "5"):
        manifest = repo / "digits" / version / "manifest.json"
        data = json.loads(manifest.read_text())
        del data["holdout"]
        manifest.write_text(json.dumps(data))
    result = gate("http://127.0.0.1:1", repo, "2", "5")
    assert result.outcome == "not checked"
    assert "neither digits:2 nor digits:5 has a labelled holdout" in result.summary
