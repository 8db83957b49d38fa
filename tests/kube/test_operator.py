"""The kopf operator against kmock (an in-memory Kubernetes API) and a real Prometheus.

Prometheus scrapes a small exporter that the test drives like a gateway in front of the
predictors (per-version requests, errors and latency), with the demo profile's rules
(1 s scrape and evaluation, 15 s windows). The operator runs in a thread, as in a pod.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app

from modelcanary import metrics_contract
from modelcanary.adapters.status_store import INTENT_ANNOTATION
from modelcanary.asgi_server import AppServer
from modelcanary.kube import operator
from modelcanary.local.monitoring import ScrapeTarget
from tests.conftest import register_kind, write_kubeconfig
from tests.support.traffic import demo_prometheus

pytestmark = pytest.mark.slow
MC = "/apis/modelcanary.io/v1alpha1/namespaces/default/modelcanaries"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"


@dataclass
class Traffic:
    """Requests per second per (model, version), and the share that fails."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    error_ratio: dict[tuple[str, str], float] = field(default_factory=dict)
    versions: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.requests = Counter(metrics_contract.GATEWAY_REQUESTS, "requests",
                                ["model", "version", "code"], registry=self.registry)  # fmt: skip
        self.latency = Histogram(metrics_contract.GATEWAY_LATENCY, "latency", ["model", "version"],
                                 buckets=metrics_contract.LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tick = 0
        while not self.stop.wait(0.1):
            tick += 1
            for model, version in list(self.versions):
                failing = (tick % 10) < 10 * self.error_ratio.get((model, version), 0.0)
                self.requests.labels(model, version, "500" if failing else "200").inc(2)
                self.latency.labels(model, version).observe(0.004)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Traffic]]:
    run = tmp_path_factory.mktemp("prometheus")
    traffic = Traffic()
    exporter = AppServer(make_asgi_app(traffic.registry), name="test exporter")
    exporter.start()
    traffic.thread.start()
    try:
        target = ScrapeTarget("gateway", f"{exporter.host}:{exporter.port}")
        with demo_prometheus(run, target) as server:
            yield server.url, traffic
    finally:
        traffic.stop.set()
        exporter.stop()


Client = Callable[..., Awaitable[Any]]


@pytest_asyncio.fixture
async def api(kmock: kmock.KubernetesEmulator) -> Any:
    for resource, kind in (
        ("modelcanary.io/v1alpha1/modelcanaries", "ModelCanary"),
        ("serving.kserve.io/v1beta1/inferenceservices", "InferenceService"),
        ("v1/namespaces", "Namespace"),
        ("v1/events", "Event"),
    ):
        register_kind(kmock, resource, kind, namespaced=resource != "v1/namespaces")
    kmock.resources["modelcanary.io/v1alpha1/modelcanaries"].subresources = {"status"}
    async with aiohttp.ClientSession(base_url=str(kmock.url)) as session:

        async def call(method: str, path: str, body: Any = None) -> Any:
            headers = {"content-type": "application/merge-patch+json"} if method == "PATCH" else {}
            async with session.request(method, path, json=body, headers=headers) as response:
                return await response.json()

        yield call


@pytest.fixture
def start_operator(
    kmock: kmock.KubernetesEmulator, prometheus: tuple[str, Traffic]
) -> Iterator[Callable[[], Callable[[], None]]]:
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start() -> Callable[[], None]:
        stop = threading.Event()
        config = operator.OperatorConfig(
            namespace="default", prometheus=prometheus[0], source="gateway", window_s=15,
            tick_s=1, webhook_port=0, metrics_port=0, api_host=str(kmock.url).rstrip("/"),
            bind="127.0.0.1",
        )  # fmt: skip
        thread = threading.Thread(target=operator.run, args=(config, stop), daemon=True)
        thread.start()
        running.append((thread, stop))

        def halt() -> None:
            stop.set()
            thread.join(30)

        return halt

    yield start
    for thread, stop in running:
        stop.set()
        thread.join(30)


def isvc(name: str, version: str) -> dict[str, Any]:
    """No storageUri: the checks before traffic are "not checked" (test_operator_gate.py
    runs them)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
        "spec": {"predictor": {"canaryTrafficPercent": 0, "model": {
            "runtime": "triton", "args": [f"--model-config-name=v{version}"],
            "modelFormat": {"name": "triton"}}}},
        "status": {"components": {"predictor": {"latestCreatedRevision": f"{name}-2",
                                                "latestReadyRevision": f"{name}-2"}}},
    }  # fmt: skip


def canary(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelcanary.io/v1alpha1", "kind": "ModelCanary",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "1",
                     "annotations": {"modelcanary.io/mode": "serverless"}},
        "spec": {"model": name, "stable": {"version": "1"}, "canary": {"version": "2"},
                 "steps": [50, 100], "interval": "2s",
                 "analysis": {"failureLimit": 0,
                              "errorRatio": {"max": 0.05}, "noData": {"after": "30s"},
                              "beforeFull": {"maxWait": "2s"}},
                 **spec},
    }  # fmt: skip


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def status(api: Client, name: str) -> dict[str, Any]:
    found: dict[str, Any] = (await api("GET", f"{MC}/{name}")).get("status", {})
    return found


def serve(prometheus: tuple[str, Traffic], model: str, canary_errors: float = 0.0) -> None:
    traffic = prometheus[1]
    traffic.error_ratio[(model, "2")] = canary_errors
    traffic.versions |= {(model, "1"), (model, "2")}


@pytest.mark.asyncio
async def test_a_rollout_patches_the_inference_service_step_by_step(
    api: Client, start_operator: Callable[[], Callable[[], None]], prometheus: tuple[str, Traffic]
) -> None:
    serve(prometheus, "digits")
    await api("POST", ISVC, isvc("digits", "2"))
    await api("POST", MC, canary("digits"))
    start_operator()
    seen: list[object] = []

    async def promoted() -> bool:
        predictor = (await api("GET", f"{ISVC}/digits"))["spec"]["predictor"]
        value = predictor.get("canaryTrafficPercent", "removed")
        if not seen or seen[-1] != value:
            seen.append(value)
        found = await status(api, "digits")
        return found.get("phase") == "Promoted" and found["state"]["applied"]

    await until(promoted, 90, "not promoted")
    await promoted()
    final = await status(api, "digits")
    assert final["weight"] == 100 and final["step"] == 2
    assert [t["action"] for t in final["state"]["history"]] == ["start", "advance", "promote"]
    assert 50 in seen and seen[-1] == "removed", seen  # 0 -> 50 -> (100) -> removed
    assert final["conditions"][0]["reason"] == "Promoted"


@pytest.mark.asyncio
async def test_a_failing_canary_is_rolled_back_to_the_stable_spec(
    api: Client, start_operator: Callable[[], Callable[[], None]], prometheus: tuple[str, Traffic]
) -> None:
    serve(prometheus, "cats", canary_errors=0.5)
    await api("POST", ISVC, isvc("cats", "2"))
    await api("POST", MC, canary("cats"))
    start_operator()

    async def rolled_back() -> bool:
        return (await status(api, "cats")).get("phase") == "RolledBack"

    await until(rolled_back, 90, "not rolled back")
    predictor = (await api("GET", f"{ISVC}/cats"))["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 0
    assert predictor["model"]["args"] == ["--model-config-name=v1"]
    assert "error" in (await status(api, "cats"))["message"].lower()


@pytest.mark.asyncio
async def test_a_restarted_operator_continues_from_the_status(
    api: Client, start_operator: Callable[[], Callable[[], None]], prometheus: tuple[str, Traffic]
) -> None:
    serve(prometheus, "dogs")
    await api("POST", ISVC, isvc("dogs", "2"))
    await api("POST", MC, canary("dogs", steps=[20, 50, 100], interval="4s"))
    halt = start_operator()

    async def at_second_step() -> bool:
        return (await status(api, "dogs")).get("step", 0) >= 2

    await until(at_second_step, 90, "never reached step 2")
    await asyncio.to_thread(halt)
    stopped_at = await status(api, "dogs")
    start_operator()

    async def promoted() -> bool:
        return (await status(api, "dogs")).get("phase") == "Promoted"

    await until(promoted, 90, "not promoted after the restart")
    history = (await status(api, "dogs"))["state"]["history"]
    steps = [t["step"] for t in history if t["action"] in ("start", "advance")]
    assert steps == [0, 1, 2], steps
    assert stopped_at["step"] >= 2


@pytest.mark.asyncio
async def test_an_intent_annotation_is_acted_on_and_cleared(
    api: Client, start_operator: Callable[[], Callable[[], None]], prometheus: tuple[str, Traffic]
) -> None:
    serve(prometheus, "owls")
    await api("POST", ISVC, isvc("owls", "2"))
    await api("POST", MC, canary("owls", steps=[10, 100], interval="1h"))
    start_operator()

    async def progressing() -> bool:
        return (await status(api, "owls")).get("phase") == "Progressing"

    await until(progressing, 60, "never started")
    intent = '{"action": "rollback", "reason": "looks wrong", "by": "ana", "id": "i-1"}'
    await api("PATCH", f"{MC}/owls", {"metadata": {"annotations": {INTENT_ANNOTATION: intent}}})

    async def rolled_back() -> bool:
        return (await status(api, "owls")).get("phase") == "RolledBack"

    await until(rolled_back, 60, "the rollback intent was not acted on")
    last = (await status(api, "owls"))["state"]["history"][-1]
    assert last["by"] == "ana" and last["reason"].endswith("looks wrong")

    async def cleared() -> bool:
        annotations = (await api("GET", f"{MC}/owls"))["metadata"].get("annotations", {})
        return INTENT_ANNOTATION not in annotations

    await until(cleared, 30, "the intent annotation was not removed once acted on")
    history = (await status(api, "owls"))["state"]["history"]
    assert [t["action"] for t in history].count("rollback") == 1  # acted on once


@pytest.mark.asyncio
async def test_an_invalid_spec_gets_a_condition_naming_the_field(
    api: Client, start_operator: Callable[[], Callable[[], None]]
) -> None:
    await api("POST", MC, canary("bad", steps=[50, 20]))
    start_operator()

    async def invalid() -> bool:
        return (await status(api, "bad")).get("phase") == "Invalid"

    await until(invalid, 60, "no Invalid status")
    found = await status(api, "bad")
    assert "steps: steps must increase, got [50, 20]" in found["message"]
    assert found["conditions"][0]["reason"] == "InvalidSpec"


@pytest.mark.asyncio
async def test_deleting_an_unfinished_rollout_leaves_traffic_on_stable(
    api: Client, start_operator: Callable[[], Callable[[], None]], prometheus: tuple[str, Traffic]
) -> None:
    serve(prometheus, "ants")
    await api("POST", ISVC, isvc("ants", "2"))
    await api("POST", MC, canary("ants", steps=[30, 100], interval="1h"))
    start_operator()

    async def at_thirty() -> bool:
        predictor = (await api("GET", f"{ISVC}/ants"))["spec"]["predictor"]
        return bool(predictor.get("canaryTrafficPercent") == 30)

    await until(at_thirty, 60, "the canary never got 30%")
    await api("DELETE", f"{MC}/ants")

    async def back_on_stable() -> bool:
        predictor = (await api("GET", f"{ISVC}/ants"))["spec"]["predictor"]
        return bool(
            predictor.get("canaryTrafficPercent") == 0
            and predictor["model"]["args"] == ["--model-config-name=v1"]
        )

    await until(back_on_stable, 30, "deleting the ModelCanary left traffic on the canary")


ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes"


@pytest.mark.asyncio
async def test_standard_mode_moves_the_http_route_weights(
    api: Client, kmock: kmock.KubernetesEmulator, start_operator: Callable[[], Callable[[], None]],
    prometheus: tuple[str, Traffic],
) -> None:  # fmt: skip
    register_kind(kmock, "gateway.networking.k8s.io/v1/httproutes", "HTTPRoute")
    serve(prometheus, "bees")
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    for version in ("1", "2"):
        body = isvc(f"bees-v{version}", version)
        body["status"] = ready
        await api("POST", ISVC, body)
    refs = [{"name": "bees-v1-predictor", "port": 80, "weight": 100},
            {"name": "bees-v2-predictor", "port": 80, "weight": 0}]  # fmt: skip
    await api("POST", ROUTES, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "bees", "namespace": "default", "resourceVersion": "1"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": refs}]},
    })  # fmt: skip
    body = canary("bees")
    body["metadata"]["annotations"]["modelcanary.io/mode"] = "standard"
    await api("POST", MC, body)
    start_operator()
    seen: list[list[int]] = []

    async def promoted() -> bool:
        route = await api("GET", f"{ROUTES}/bees")
        weights = [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]]
        if not seen or seen[-1] != weights:
            seen.append(weights)
        found = await status(api, "bees")
        return found.get("phase") == "Promoted" and found["state"]["applied"]

    await until(promoted, 90, "not promoted")
    await promoted()
    assert seen[0] == [100, 0] and [50, 50] in seen and seen[-1] == [0, 100], seen


@pytest.mark.asyncio
async def test_kubectl_canary_promote_is_picked_up_by_the_operator(
    api: Client, kmock: kmock.KubernetesEmulator, start_operator: Callable[[], Callable[[], None]],
    prometheus: tuple[str, Traffic], tmp_path: Path,
) -> None:  # fmt: skip
    """The plugin records the intent; the operator acts on it, records who asked, clears it."""
    from modelcanary.kubectl.plugin import main as kubectl_canary

    serve(prometheus, "eels")
    await api("POST", ISVC, isvc("eels", "2"))
    await api("POST", MC, canary("eels", steps=[10, 40, 100], interval="1h"))
    start_operator()

    async def at_first_step() -> bool:
        found = await status(api, "eels")
        return found.get("phase") == "Progressing" and found["state"]["applied"]

    await until(at_first_step, 60, "never started")
    config = write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    argv = ["--kubeconfig", str(config), "promote", "eels", "--reason", "looks good"]
    assert await asyncio.to_thread(kubectl_canary, argv) == 0

    async def advanced() -> bool:
        found = await status(api, "eels")
        return found.get("step") == 2 and found["state"]["applied"]

    await until(advanced, 30, "the promote intent was not acted on")
    last = (await status(api, "eels"))["state"]["history"][-1]
    assert (last["action"], last["by"]) == ("advance", "ana") and "looks good" in last["reason"]
    predictor = (await api("GET", f"{ISVC}/eels"))["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 40

    async def cleared() -> bool:
        annotations = (await api("GET", f"{MC}/eels"))["metadata"].get("annotations", {})
        return INTENT_ANNOTATION not in annotations

    await until(cleared, 30, "the intent stayed on the resource")
