"""The operator shadows in a cluster: on a real API server, against a real Triton serving
digits 2 and 4 (labels shifted by one), with the cluster comparator started by the test and
scraped by a real Prometheus with the demo rules.

No pod runs here, so the test plays KServe's inference logger on the stable predictor: for
each request it sends to stable, it posts the request and response CloudEvents to the
comparator. The operator must start the comparison on the comparator's admin API with the
canary's published URL, judge the pairs through Prometheus and roll 2 -> 4 back before any
traffic, then stop the comparison.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelcanary.adapters.kserve_router import KSERVE
from modelcanary.adapters.repo_catalog import reader_pair, repository_reader
from modelcanary.asgi_server import AppServer
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.local.monitoring import Prometheus, ScrapeTarget
from modelcanary.modelrepo.holdout_store import read_holdout
from modelcanary.process import free_ports
from modelcanary.serving.triton_home import TritonHome
from modelcanary.shadow.service import ComparatorService, ServiceSettings
from tests.kube.test_operator_gate import admin, published_status
from tests.support.apiserver import ApiServer
from tests.support.file_server import FileServer
from tests.support.kserve_logger import serve_and_log
from tests.support.operator_process import OperatorProcess
from tests.support.rollouts import inference_service, model_canary
from tests.support.traffic import WINDOW, demo_prometheus
from tests.support.triton import serving_digits
from tests.support.waits import until

pytestmark = pytest.mark.slow
TOKEN = "comparator-token"
BATCH = 4


@pytest.fixture(scope="module")
def triton(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Triton serving digits 2 and 4; its HTTP base URL."""
    with serving_digits(digits_repo, triton_home, tmp_path_factory.mktemp("run"), [2, 4]) as url:
        yield url


@pytest.fixture(scope="module")
def storage_uri(digits_repo: Path) -> Iterator[str]:
    """The example repository as an HTTP storageUri, for the golden-sample check."""
    with FileServer(digits_repo.parent) as server:
        yield f"{server.url}/{digits_repo.name}"


@pytest.fixture
def comparator(digits_repo: Path, storage_uri: str) -> Iterator[str]:
    """The comparator reading the manifests from the storageUri, as the chart runs it."""
    reader = repository_reader(storage_uri)
    app = ComparatorService(ServiceSettings(), TOKEN, lambda m, s, c: reader_pair(reader, m, s, c))
    server = AppServer(app, "127.0.0.1", 0, name="comparator")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def prometheus(comparator: str, tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping the comparator every second, with the demo rules."""
    target = ScrapeTarget("comparator", comparator.removeprefix("http://"))
    run = tmp_path / "prometheus"
    run.mkdir()
    with demo_prometheus(run, target) as server:
        yield server


@pytest.fixture
def operator(
    apiserver: ApiServer,
    namespace: str,
    crds: None,
    comparator: str,
    prometheus: Prometheus,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    (webhook,) = free_ports(1)
    token = tmp_path / "comparator.token"
    token.write_text(TOKEN + "\n")
    with OperatorProcess(
        apiserver.kubeconfig,
        namespace,
        prometheus.url,
        tmp_path / "operator.log",
        "--tick=1s",
        f"--webhook-port={webhook}",
        f"--window={WINDOW}",
        f"--comparator={comparator}",
        f"--comparator-token-file={token}",
    ) as process:
        yield process


@pytest.fixture(scope="module")
def holdout(digits_repo: Path) -> np.ndarray:
    inputs, _ = read_holdout(digits_repo / "digits" / "2" / "holdout.npz")
    return inputs["pixels"].astype(np.float32)


def status_of(api: Any, namespace: str, name: str) -> dict[str, Any]:
    body: Any = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(body.get("status") or {})


def test_the_label_bug_is_rolled_back_while_shadowing_before_any_traffic(
    apiserver: ApiServer,
    namespace: str,
    operator: OperatorProcess,
    triton: str,
    storage_uri: str,
    comparator: str,
    holdout: np.ndarray,
) -> None:
    api = admin(apiserver)
    name = "labelbug"
    isvc = inference_service(name, "2")
    isvc["spec"]["predictor"]["model"]["storageUri"] = storage_uri
    api.create_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], isvc)
    api.patch_namespaced_custom_object_status(
        *KSERVE[:2], namespace, KSERVE[2], name, {"status": published_status(name, triton)}
    )
    body = model_canary(
        name,
        "digits",
        stable={"version": "2"},
        canary={"version": "4"},
        shadow={"percent": 100, "minSamples": 30, "maxDuration": "60s"},
    )
    body["spec"]["analysis"]["holdout"] = {"enabled": False}  # the comparison must catch it
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deadline, sent = time.monotonic() + 120, 0
    with httpx.Client(timeout=10) as client:
        while True:
            status = status_of(api, namespace, name)
            if status.get("phase") in ("RolledBack", "Progressing", "Promoted"):
                break
            assert time.monotonic() < deadline, (
                f"{name} is {status.get('phase')}: {status.get('message')}\n{operator.tail()}"
            )
            running = client.get(f"{comparator}/admin/shadow/digits", headers=auth)
            if running.status_code != 200:  # the operator has not started the comparison yet
                time.sleep(0.2)
                continue
            assert running.json()["stable"] == "2" and running.json()["canary"] == "4"
            start = (sent * BATCH) % (len(holdout) - BATCH)
            answer = serve_and_log(
                client,
                triton,
                f"{comparator}/",
                "digits",
                holdout[start : start + BATCH],
                version="2",
                service=name,
            )
            assert answer.status_code == 200
            sent += 1
            time.sleep(0.05)
    assert status["phase"] == "RolledBack", status.get("message")
    state = status["state"]
    assert state["weight"] == 0 and state.get("started_at") is None  # never took a step
    actions = [t["action"] for t in state["history"]]
    assert actions == ["shadow", "rollback"], actions
    reason = state["history"][-1]["reason"]
    assert "shadow comparison: the canary agrees with stable on 0 of" in reason, reason

    # the state is written (applied: false) before the router is asked, then again: wait
    def canary_percent() -> object:
        isvc: Any = api.get_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], name)
        return isvc["spec"]["predictor"].get("canaryTrafficPercent")

    until(lambda: canary_percent() == 0, 10, "the canary kept traffic", context=canary_percent)
    # the rollout ended: the operator stopped the comparison
    shadows = httpx.get(f"{comparator}/admin/shadow", headers=auth).json()["shadow"]
    assert shadows == {}
