"""The golden-sample pre-check against the real Triton behind the gateway."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelcanary.adapters.golden_check import GoldenUnavailable, run_golden_check
from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from modelcanary.process import free_ports
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
    with TritonServer(repo, tmp_path_factory.mktemp("run"), triton_home) as triton:
        endpoints = triton.start()
        triton.load("digits", [1, 2])
        config = parse_config(
            {
                "models": {
                    "digits": {
                        "stable": "1",
                        "upstreams": {"1": endpoints.http, "2": endpoints.http},
                    }
                }
            },
            "t",
        )
        gateway = GatewayServer(Gateway(config, "token"))
        try:
            yield gateway.start(), mismatched
        finally:
            gateway.stop()


def test_a_faithful_canary_passes(served: tuple[str, Path], digits_repo: Path) -> None:
    url, _ = served
    result = run_golden_check(url, digits_repo, "digits", "2")
    assert result.passed and result.worst.startswith("32 samples, max abs err")


def test_the_check_is_not_counted_as_the_canarys_traffic(
    served: tuple[str, Path], digits_repo: Path
) -> None:
    """Its requests are probes: a canary with no users must show no requests, or a rollout
    with no traffic would advance on the golden samples alone."""
    url, _ = served
    run_golden_check(url, digits_repo, "digits", "2")
    requests = metric_value(f"{url}/metrics", "modelcanary_gateway_requests_total", version="2")
    probes = metric_value(f"{url}/metrics", "modelcanary_gateway_probe_requests_total",
                          version="2", code="200")  # fmt: skip
    assert requests == 0 and probes > 0


def test_a_canary_that_answers_differently_fails_with_the_worst_error(
    served: tuple[str, Path],
) -> None:
    url, mismatched = served
    result = run_golden_check(url, mismatched, "digits", "2")
    assert not result.passed
    assert result.worst.startswith("output 'logits' off by") and "over 32 samples" in result.worst


def test_an_unreachable_canary_is_no_verdict(digits_repo: Path) -> None:
    (port,) = free_ports(1)
    with pytest.raises(GoldenUnavailable, match="is unreachable"):
        run_golden_check(f"http://127.0.0.1:{port}", digits_repo, "digits", "2")
    with pytest.raises(GoldenUnavailable, match="no golden samples for digits:9"):
        run_golden_check(f"http://127.0.0.1:{port}", digits_repo, "digits", "9")
