"""The kopf operator against a real API server and a real Prometheus.

The operator runs in a thread, as in a pod, with the admin's kubeconfig, watching one
namespace for the module; each test has its own rollouts and its own model's series.
Prometheus scrapes an exporter that the test drives as Triton's metrics endpoint
(tests/support/traffic.py). No KServe controller runs: the test writes InferenceService
readiness through the status subresource, as KServe would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from modelcanary.adapters.gateway_api_router import ROUTES
from modelcanary.adapters.kserve_router import KSERVE
from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.adapters.status_store import INTENT_ANNOTATION
from modelcanary.durations import parse_duration
from modelcanary.kube import operator
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.local.monitoring import Prometheus
from tests.support.apiserver import ApiServer, write_kubeconfig
from tests.support.rollouts import (
    create_canary,
    create_ready_service,
    inference_service,
    model_canary,
)
from tests.support.traffic import SOURCE, WINDOW, Series, Traffic, traffic_prometheus
from tests.support.waits import until

pytestmark = pytest.mark.slow
Start = Callable[[], Callable[[], None]]


@pytest.fixture(scope="module")
def ns(module_namespace: str, modelcanary_crd: str, upstream_crds: list[str]) -> str:
    """The module's namespace, with the ModelCanary, KServe and Gateway API CRDs."""
    return module_namespace


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Traffic]]:
    with traffic_prometheus(tmp_path_factory.mktemp("prometheus")) as found:
        yield found


@pytest.fixture(scope="module")
def api(apiserver: ApiServer) -> Iterator[client.CustomObjectsApi]:
    with config.new_client_from_config(config_file=str(apiserver.kubeconfig)) as admin:
        yield client.CustomObjectsApi(admin)


@pytest.fixture
def start_operator(
    apiserver: ApiServer, ns: str, monitoring: tuple[Prometheus, Traffic]
) -> Iterator[Start]:
    """Start the operator in a thread; the returned function stops it."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start() -> Callable[[], None]:
        stop = threading.Event()
        settings = operator.OperatorConfig(
            namespace=ns,
            prometheus=monitoring[0].url,
            source=SOURCE,
            window_s=parse_duration(WINDOW),
            tick_s=1,
            webhook_port=0,
            metrics_port=0,
            kubeconfig=apiserver.kubeconfig,
            bind="127.0.0.1",
        )
        thread = threading.Thread(target=operator.run, args=(settings, stop), daemon=True)
        thread.start()
        running.append((thread, stop))

        def halt() -> None:
            stop.set()
            thread.join(30)
            assert not thread.is_alive(), "the operator did not stop"

        return halt

    yield start
    for thread, stop in running:
        stop.set()
        thread.join(30)


class Cluster:
    """The test's objects in the module's namespace, read as the admin."""

    def __init__(self, api: client.CustomObjectsApi, ns: str) -> None:
        self.api, self.ns = api, ns

    def canary(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name
        )
        return found

    def status(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.canary(name).get("status", {})
        return found

    def predictor(self, name: str) -> dict[str, Any]:
        isvc: Any = self.api.get_namespaced_custom_object(*KSERVE[:2], self.ns, KSERVE[2], name)
        found: dict[str, Any] = isvc["spec"]["predictor"]
        return found

    def intent(self, name: str) -> str | None:
        annotations = self.canary(name)["metadata"].get("annotations") or {}
        found: str | None = annotations.get(INTENT_ANNOTATION)
        return found


@pytest.fixture
def cluster(api: client.CustomObjectsApi, ns: str) -> Cluster:
    return Cluster(api, ns)


def after_canary_install(name: str) -> dict[str, Any]:
    """The InferenceService as the chart leaves it with a canary: version 2 at 0%."""
    return inference_service(name, "2", canary_percent=0)


def test_a_rollout_patches_the_inference_service_step_by_step(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    monitoring[1].serve("digits")
    create_ready_service(cluster.api, cluster.ns, "digits", after_canary_install("digits"))
    create_canary(cluster.api, cluster.ns, model_canary("digits", "digits", steps=[50, 100]))
    start_operator()
    seen: list[object] = []

    def promoted() -> bool:
        value = cluster.predictor("digits").get("canaryTrafficPercent", "removed")
        if not seen or seen[-1] != value:
            seen.append(value)
        found = cluster.status("digits")
        return found.get("phase") == "Promoted" and found["state"]["applied"]

    until(promoted, 90, "not promoted")
    promoted()
    final = cluster.status("digits")
    assert final["weight"] == 100 and final["step"] == 2
    assert [t["action"] for t in final["state"]["history"]] == ["start", "advance", "promote"]
    assert seen[0] == 0 and 50 in seen and seen[-1] == "removed", seen  # 0, 50, (100), removed
    assert final["conditions"][0]["reason"] == "Promoted"


def test_a_failing_canary_is_rolled_back_to_the_stable_spec(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    monitoring[1].serve("cats", canary_errors=0.5)
    create_ready_service(cluster.api, cluster.ns, "cats", after_canary_install("cats"))
    create_canary(cluster.api, cluster.ns, model_canary("cats", "cats", steps=[50, 100]))
    start_operator()
    until(lambda: cluster.status("cats").get("phase") == "RolledBack", 90, "not rolled back")
    predictor = cluster.predictor("cats")
    assert predictor["canaryTrafficPercent"] == 0
    assert predictor["model"]["args"] == ["--model-config-name=v1"]
    assert "error" in cluster.status("cats")["message"].lower()


def prometheus_fires(prometheus: Prometheus, model: str) -> bool:
    """Prometheus fires a critical alert for MODEL's version 2."""
    query = f'ALERTS{{alertstate="firing",severity="critical",model="{model}",version="2"}}'
    found = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5)
    return bool(found.json()["data"]["result"])


def test_a_rollback_before_the_first_step_restores_the_stable_model(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    """Issue 12 defect 5: with a critical alert already firing, Pending -> RolledBack must
    still route: the InferenceService carries the canary's model at 0% since the install."""
    prometheus, traffic = monitoring
    traffic.serve("crows", canary_errors=0.5)
    until(lambda: prometheus_fires(prometheus, "crows"), 60, "no critical alert for crows v2")
    cluster.api.create_namespaced_custom_object(
        *KSERVE[:2], cluster.ns, KSERVE[2], after_canary_install("crows")
    )  # not ready: the canary never gets traffic
    create_canary(cluster.api, cluster.ns, model_canary("crows", "crows"))
    start_operator()
    until(lambda: cluster.status("crows").get("phase") == "RolledBack", 60, "not rolled back")
    history = cluster.status("crows")["state"]["history"]
    assert [(t["action"], t["weight"]) for t in history] == [("rollback", 0)], history
    until(lambda: cluster.status("crows")["state"]["applied"], 30, "the rollback was not applied")
    predictor = cluster.predictor("crows")
    assert predictor["model"]["args"] == ["--model-config-name=v1"], predictor
    assert predictor["canaryTrafficPercent"] == 0


def test_no_data_pauses_the_rollout_after_no_data_after(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    """Issue 12 defect 3: with no canary requests at all, the rollout starts, then pauses
    once noData.after has passed (it does not stay at the first step for ever). Stable
    serves: the first step waits for its counters (issue 20)."""
    monitoring[1].series[("moths", "1")] = Series(time.time())
    prometheus = PrometheusSource(monitoring[0].url, SOURCE, 15)
    stable_requests = 'modelcanary:requests:total{model="moths"}'
    until(lambda: prometheus.query(stable_requests), 30, "stable's counters were never recorded")
    create_ready_service(cluster.api, cluster.ns, "moths", after_canary_install("moths"))
    analysis = {"failureLimit": 0, "noData": {"after": "5s", "action": "pause"}}
    body = model_canary("moths", "moths", steps=[50, 100], interval="2s", analysis=analysis)
    create_canary(cluster.api, cluster.ns, body)
    start_operator()
    until(lambda: cluster.status("moths").get("phase") == "Paused", 60, "never paused")
    found = cluster.status("moths")
    history = found["state"]["history"]
    assert [t["action"] for t in history] == ["start", "pause"], history
    assert history[-1]["at"] - history[0]["at"] >= 5, history  # not before noData.after
    assert "no data for more than 5s" in found["message"], found["message"]
    assert found["weight"] == 50 and cluster.predictor("moths")["canaryTrafficPercent"] == 50


def test_a_restarted_operator_continues_from_the_status(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    monitoring[1].serve("dogs")
    create_ready_service(cluster.api, cluster.ns, "dogs", after_canary_install("dogs"))
    body = model_canary("dogs", "dogs", steps=[20, 50, 100], interval="4s")
    create_canary(cluster.api, cluster.ns, body)
    halt = start_operator()
    until(lambda: cluster.status("dogs").get("step", 0) >= 2, 90, "never reached step 2")
    halt()
    stopped_at = cluster.status("dogs")
    start_operator()
    until(lambda: cluster.status("dogs").get("phase") == "Promoted", 90, "not promoted")
    history = cluster.status("dogs")["state"]["history"]
    steps = [t["step"] for t in history if t["action"] in ("start", "advance")]
    assert steps == [0, 1, 2], steps
    assert stopped_at["step"] >= 2


def test_an_intent_annotation_is_acted_on_and_cleared(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    monitoring[1].serve("owls")
    create_ready_service(cluster.api, cluster.ns, "owls", after_canary_install("owls"))
    body = model_canary("owls", "owls", steps=[10, 100], interval="1h")
    create_canary(cluster.api, cluster.ns, body)
    start_operator()
    until(lambda: cluster.status("owls").get("phase") == "Progressing", 60, "never started")
    intent = '{"action": "rollback", "reason": "looks wrong", "by": "ana", "id": "i-1"}'
    annotate = {"metadata": {"annotations": {INTENT_ANNOTATION: intent}}}
    cluster.api.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "owls", annotate)
    until(lambda: cluster.status("owls").get("phase") == "RolledBack", 60, "the intent was ignored")
    last = cluster.status("owls")["state"]["history"][-1]
    assert last["by"] == "ana" and last["reason"].endswith("looks wrong")
    until(lambda: cluster.intent("owls") is None, 30, "the intent annotation was not removed")
    history = cluster.status("owls")["state"]["history"]
    assert [t["action"] for t in history].count("rollback") == 1  # acted on once


def test_an_invalid_spec_gets_a_condition_naming_the_field(
    cluster: Cluster, start_operator: Start
) -> None:
    """A spec the CRD accepts but the engine refuses (the CRD's duration pattern has no
    length limit; the engine refuses a duration too large for a float)."""
    huge = "1" + "0" * 400 + "s"
    create_canary(cluster.api, cluster.ns, model_canary("bad", "bad", interval=huge))
    start_operator()
    until(lambda: cluster.status("bad").get("phase") == "Invalid", 60, "no Invalid status")
    found = cluster.status("bad")
    assert "interval: a duration of 402 characters is too large" in found["message"], found
    assert found["conditions"][0]["reason"] == "InvalidSpec"


def test_deleting_an_unfinished_rollout_leaves_traffic_on_stable(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    monitoring[1].serve("ants")
    create_ready_service(cluster.api, cluster.ns, "ants", after_canary_install("ants"))
    body = model_canary("ants", "ants", steps=[30, 100], interval="1h")
    create_canary(cluster.api, cluster.ns, body)
    start_operator()
    until(lambda: cluster.predictor("ants").get("canaryTrafficPercent") == 30, 60, "never at 30%")
    cluster.api.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, PLURAL, "ants")

    def back_on_stable() -> bool:
        predictor = cluster.predictor("ants")
        return bool(
            predictor.get("canaryTrafficPercent") == 0
            and predictor["model"]["args"] == ["--model-config-name=v1"]
        )

    until(back_on_stable, 30, "deleting the ModelCanary left traffic on the canary")


def test_standard_mode_moves_the_http_route_weights(
    cluster: Cluster, start_operator: Start, monitoring: tuple[Prometheus, Traffic]
) -> None:
    monitoring[1].serve("bees")
    for version in ("1", "2"):
        name = f"bees-v{version}"
        create_ready_service(cluster.api, cluster.ns, name, inference_service(name, version))
    refs = [
        {"name": "bees-v1-predictor", "port": 80, "weight": 100},
        {"name": "bees-v2-predictor", "port": 80, "weight": 0},
    ]
    http_route = {
        "apiVersion": f"{ROUTES[0]}/{ROUTES[1]}",
        "kind": "HTTPRoute",
        "metadata": {"name": "bees"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": refs}]},
    }
    cluster.api.create_namespaced_custom_object(*ROUTES[:2], cluster.ns, ROUTES[2], http_route)
    body = model_canary("bees", "bees", steps=[50, 100])
    body["metadata"]["annotations"]["modelcanary.io/mode"] = "standard"
    create_canary(cluster.api, cluster.ns, body)
    start_operator()
    seen: list[list[int]] = []

    def promoted() -> bool:
        route: Any = cluster.api.get_namespaced_custom_object(
            *ROUTES[:2], cluster.ns, ROUTES[2], "bees"
        )
        weights = [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]]
        if not seen or seen[-1] != weights:
            seen.append(weights)
        found = cluster.status("bees")
        return found.get("phase") == "Promoted" and found["state"]["applied"]

    until(promoted, 90, "not promoted")
    promoted()
    assert seen[0] == [100, 0] and [50, 50] in seen and seen[-1] == [0, 100], seen


def test_kubectl_canary_promote_is_picked_up_by_the_operator(
    apiserver: ApiServer,
    cluster: Cluster,
    start_operator: Start,
    monitoring: tuple[Prometheus, Traffic],
    tmp_path: Path,
) -> None:
    """The plugin records the intent; the operator acts on it, records who asked (the
    kubeconfig's user), clears it."""
    from modelcanary.kubectl.plugin import main as kubectl_canary

    monitoring[1].serve("eels")
    create_ready_service(cluster.api, cluster.ns, "eels", after_canary_install("eels"))
    body = model_canary("eels", "eels", steps=[10, 40, 100], interval="1h")
    create_canary(cluster.api, cluster.ns, body)
    start_operator()

    def at_first_step() -> bool:
        found = cluster.status("eels")
        return found.get("phase") == "Progressing" and found["state"]["applied"]

    until(at_first_step, 60, "never started")
    ana = write_kubeconfig(
        tmp_path / "kubeconfig", apiserver.url, apiserver.ca_file, "ana", apiserver.admin_token
    )
    argv = ["--kubeconfig", str(ana), "-n", cluster.ns, "promote", "eels", "--reason", "looks good"]
    assert kubectl_canary(argv) == 0

    def advanced() -> bool:
        found = cluster.status("eels")
        return found.get("step") == 2 and found["state"]["applied"]

    until(advanced, 30, "the promote intent was not acted on")
    last = cluster.status("eels")["state"]["history"][-1]
    assert (last["action"], last["by"]) == ("advance", "ana") and "looks good" in last["reason"]
    assert cluster.predictor("eels")["canaryTrafficPercent"] == 40
    until(lambda: cluster.intent("eels") is None, 30, "the intent stayed on the resource")


def test_a_new_rollout_is_written_without_a_conflict(
    apiserver: ApiServer,
    cluster: Cluster,
    start_operator: Start,
    monitoring: tuple[Prometheus, Traffic],
) -> None:
    """kopf puts its finalizer on a new ModelCanary as the tick that the same event woke
    reads it (and used to record the spec it handled in an annotation right after): the
    rollout's first status write must not be refused (409) because it carried the
    resourceVersion from before."""
    listed = apiserver.requests()["LIST inferenceservices"]
    start_operator()  # its watch lists them once, then its ticks begin
    until(lambda: apiserver.requests()["LIST inferenceservices"] > listed, 60, "no watch")
    time.sleep(1.5)
    before, refused_before = apiserver.requests(), apiserver.requests(code="409")
    names = [f"newts-{index}" for index in range(4)]
    for name in names:
        monitoring[1].serve(name)
        create_ready_service(cluster.api, cluster.ns, name, after_canary_install(name))
        create_canary(cluster.api, cluster.ns, model_canary(name, name, interval="1h"))
        time.sleep(1.5)  # one at a time, each in a tick of its own

    def started() -> bool:
        return all(cluster.status(name).get("phase") == "Progressing" for name in names)

    until(started, 60, "not every rollout started")
    time.sleep(2)
    refused = apiserver.requests(code="409") - refused_before
    assert refused["PATCH modelcanaries/status"] == 0, refused
    # kopf wrote to each once, its finalizer (and no record of the spec it handled)
    assert (apiserver.requests() - before)["PATCH modelcanaries"] == len(names)
    finalizers = [cluster.canary(n)["metadata"]["finalizers"] for n in names]
    assert all("modelcanary.io/finalizer" in each for each in finalizers), finalizers
