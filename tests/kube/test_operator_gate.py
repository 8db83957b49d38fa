"""The operator's checks before traffic in a cluster, without a mounted repository: on a
real API server, against a real Triton serving digits 1, 2 and 5.

The InferenceService's storageUri is the example repository served over HTTP on
127.0.0.1; its status, written by the test through the status subresource as KServe
would, publishes the `prev` (stable) and `latest` (canary) revision URLs, pointing at
Triton. The operator gets no --model-repo, and its default predictor URL (the cluster's
service DNS name) reaches nothing here: it must read the golden samples and holdouts
from the storageUri and ask the predictors at the published URLs. Version 5 (classes 3 and 8 swapped) must be rolled back
from 2 before any traffic, with the gate's numbers in status and history; 1 -> 2 starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from modelcanary.adapters.kserve_router import KSERVE
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.local.monitoring import Prometheus
from modelcanary.metrics_contract import ROLLOUT_HOLDOUT
from modelcanary.process import free_ports
from modelcanary.serving.triton_home import TritonHome
from modelcanary.waiting import wait_until
from tests.conftest import metric_value
from tests.support.apiserver import ApiServer
from tests.support.file_server import FileServer
from tests.support.operator_process import OperatorProcess
from tests.support.rollouts import inference_service, model_canary, ready_status
from tests.support.traffic import WINDOW, traffic_prometheus
from tests.support.triton import serving_digits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def triton(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Triton serving digits 1, 2 and 5; its HTTP base URL."""
    with serving_digits(digits_repo, triton_home, tmp_path_factory.mktemp("run"), [1, 2, 5]) as url:
        yield url


@pytest.fixture(scope="module")
def storage_uri(digits_repo: Path) -> Iterator[str]:
    """The example repository as an HTTP storageUri (the Triton model repository root)."""
    with FileServer(digits_repo.parent) as server:
        yield f"{server.url}/{digits_repo.name}"


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus with counters for digits 1 and 2: the checks before traffic need none,
    but the first step waits for stable's (issue 20)."""
    with traffic_prometheus(tmp_path_factory.mktemp("prometheus")) as (server, traffic):
        traffic.serve("digits")
        yield server


@pytest.fixture
def operator(
    apiserver: ApiServer, namespace: str, crds: None, tmp_path: Path, monitoring: Prometheus
) -> Iterator[OperatorProcess]:
    (webhook,) = free_ports(1)
    with OperatorProcess(
        apiserver.kubeconfig,
        namespace,
        monitoring.url,
        tmp_path / "operator.log",
        "--tick=1s",
        f"--webhook-port={webhook}",
        f"--window={WINDOW}",
    ) as process:
        yield process


def published_status(name: str, triton: str) -> dict[str, Any]:
    """Ready, with the revision URLs KServe publishes under tag routing."""
    status = ready_status(name)
    status["components"]["predictor"]["traffic"] = [
        {
            "tag": "prev",
            "revisionName": f"{name}-predictor-00001",
            "percent": 100,
            "latestRevision": False,
            "url": triton,
        },
        {
            "tag": "latest",
            "revisionName": f"{name}-predictor-00002",
            "percent": 0,
            "latestRevision": True,
            "url": triton,
        },
    ]
    status["components"]["predictor"]["url"] = "http://digits-predictor.nowhere.invalid"
    return status


def start_rollout(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    uri: str,
    triton: str,
    stable: str,
    canary: str,
) -> None:
    isvc = inference_service(name, stable)
    isvc["spec"]["predictor"]["model"]["storageUri"] = uri
    api.create_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], isvc)
    api.patch_namespaced_custom_object_status(
        *KSERVE[:2], namespace, KSERVE[2], name, {"status": published_status(name, triton)}
    )
    body = model_canary(name, "digits", stable={"version": stable}, canary={"version": canary})
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def wait_for_phase(
    api: client.CustomObjectsApi,
    namespace: str,
    name: str,
    phases: set[str],
    operator: OperatorProcess,
    timeout: float = 90.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: Any = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        status = body.get("status") or {}
        if status.get("phase") in phases:
            return dict(status)
        assert time.monotonic() < deadline, (
            f"{name} is {status.get('phase')}: {status.get('message')}\n{operator.tail()}"
        )
        time.sleep(0.3)


def admin(apiserver: ApiServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(apiserver.kubeconfig)))


def test_two_classes_swapped_is_rolled_back_before_any_traffic(
    apiserver: ApiServer, namespace: str, operator: OperatorProcess, triton: str, storage_uri: str
) -> None:
    api = admin(apiserver)
    start_rollout(api, namespace, "swapped", storage_uri, triton, "2", "5")
    status = wait_for_phase(api, namespace, "swapped", {"RolledBack", "Progressing"}, operator)
    assert status["phase"] == "RolledBack", status.get("message")
    state = status["state"]
    assert state["weight"] == 0 and state.get("started_at") is None  # never took a step
    assert state["golden"]["passed"] and state["golden"]["worst"].startswith("32 samples")
    gate = state["gate"]
    assert gate["outcome"] == "worse", gate
    numbers = gate["numbers"]
    assert numbers["holdout_samples"] == 360 and numbers["holdout_margin"] == 0.01
    assert 0.70 < numbers["holdout_canary"] < 0.82 and numbers["holdout_stable"] > 0.95
    assert numbers["holdout_difference_high"] < -0.1
    actions = [t["action"] for t in state["history"]]
    assert actions == ["rollback"], actions
    last = state["history"][-1]
    assert last["weight"] == 0 and "worse than stable on the holdout" in last["reason"]
    assert last["numbers"]["holdout_canary"] == numbers["holdout_canary"]
    isvc: Any = api.get_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], "swapped")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_an_honest_improvement_passes_the_gate_and_starts(
    apiserver: ApiServer, namespace: str, operator: OperatorProcess, triton: str, storage_uri: str
) -> None:
    api = admin(apiserver)
    start_rollout(api, namespace, "improved", storage_uri, triton, "1", "2")
    status = wait_for_phase(api, namespace, "improved", {"RolledBack", "Progressing"}, operator)
    assert status["phase"] == "Progressing", status.get("message")
    state = status["state"]
    assert state["gate"]["outcome"] == "not worse", state["gate"]
    assert state["gate"]["numbers"]["holdout_samples"] == 360
    assert state["gate"]["numbers"]["holdout_difference"] > 0
    start = state["history"][0]
    assert start["action"] == "start" and "holdout not worse" in start["reason"]
    assert start["numbers"]["holdout_stable"] == state["gate"]["numbers"]["holdout_stable"]
    # the operator exports the gate's numbers, for the chart's Grafana panel
    labels = {"namespace": namespace, "model": "digits", "version": "2", "value": "canary"}
    wait_until(lambda: metric_value(operator.metrics_url, ROLLOUT_HOLDOUT, **labels) > 0, 10)
    exported = metric_value(operator.metrics_url, ROLLOUT_HOLDOUT, **labels)
    assert exported == pytest.approx(state["gate"]["numbers"]["holdout_canary"])
