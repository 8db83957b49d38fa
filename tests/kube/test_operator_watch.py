"""The operator reads ModelCanaries and InferenceServices from a watch, not a LIST per
tick: on a real API server (counting its requests) and a real Prometheus, with the
operator as its own process (its /metrics counts its ticks).

The watch-fed copy (modelcanary.kube.watched) on its own: it follows a create, a spec
change and a delete with one LIST in all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from modelcanary.adapters.kserve_router import KSERVE
from modelcanary.durations import parse_duration
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.kube.operator import FINALIZER, OperatorConfig, build_runtime, tick
from modelcanary.kube.watched import Watched
from modelcanary.local.monitoring import Prometheus
from tests.conftest import metric_value
from tests.support.apiserver import ApiServer
from tests.support.operator_process import OperatorProcess
from tests.support.rollouts import (
    create_canary,
    create_ready_service,
    inference_service,
    model_canary,
)
from tests.support.traffic import SOURCE, WINDOW, Traffic, traffic_prometheus
from tests.support.waits import until

pytestmark = pytest.mark.slow
TICKS = "modelcanary_operator_ticks"


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Traffic]]:
    with traffic_prometheus(tmp_path_factory.mktemp("prometheus")) as found:
        yield found


@pytest.fixture
def api(apiserver: ApiServer) -> Iterator[client.CustomObjectsApi]:
    with config.new_client_from_config(config_file=str(apiserver.kubeconfig)) as admin:
        yield client.CustomObjectsApi(admin)


@pytest.fixture
def operator(
    apiserver: ApiServer,
    namespace: str,
    crds: None,
    monitoring: tuple[Prometheus, Traffic],
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        apiserver.kubeconfig,
        namespace,
        monitoring[0].url,
        tmp_path / "operator.log",
        f"--source={SOURCE}",
        f"--window={WINDOW}",
        "--tick=1s",
    )
    yield process
    process.stop()


def status(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    body: Any = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    found: dict[str, Any] = body.get("status") or {}
    return found


def canary_percent(api: client.CustomObjectsApi, namespace: str, name: str) -> object:
    body: Any = api.get_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], name)
    return body["spec"]["predictor"].get("canaryTrafficPercent", "absent")


def start_rollouts(
    api: client.CustomObjectsApi, namespace: str, traffic: Traffic, names: list[str], **spec: Any
) -> None:
    for name in names:
        traffic.serve(name)
        create_ready_service(api, namespace, name, inference_service(name, "2", canary_percent=0))
        create_canary(api, namespace, model_canary(name, name, **spec))


def started(api: client.CustomObjectsApi, namespace: str, names: list[str]) -> bool:
    return all(
        (found := status(api, namespace, name)).get("phase") == "Progressing"
        and found["state"]["applied"]
        for name in names
    )


def test_the_watched_copy_follows_a_create_a_change_and_a_delete(
    apiserver: ApiServer, api: client.CustomObjectsApi, namespace: str, crds: None
) -> None:
    noticed: list[int] = []
    before = apiserver.requests()
    copy = Watched(
        api,
        (GROUP, VERSION, PLURAL),
        namespace,
        lambda body: noticed.append(body["metadata"]["generation"]),
    ).start()
    try:
        assert copy.items(timeout=30) == {}
        create_canary(api, namespace, model_canary("hares", "hares"))
        until(lambda: "hares" in copy.items(), 30, "the new ModelCanary is not in the copy")
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "hares", {"spec": {"interval": "9s"}}
        )
        changed = until(
            lambda: copy.items().get("hares", {}).get("spec", {}).get("interval") == "9s",
            30,
            "the spec change did not reach the copy",
        )
        assert changed and copy.items()["hares"]["metadata"]["generation"] == 2
        # the copy keeps no managedFields (the server sets them on every object)
        assert "managedFields" not in copy.items()["hares"]["metadata"]
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "hares")
        until(lambda: "hares" not in copy.items(), 30, "the deleted ModelCanary stayed")
    finally:
        copy.stop()
    assert noticed == [1, 2], noticed
    assert (apiserver.requests() - before)["LIST modelcanaries"] == 1


def test_a_steady_tick_lists_nothing_and_reads_nothing(
    apiserver: ApiServer,
    api: client.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
    monitoring: tuple[Prometheus, Traffic],
) -> None:
    """Readiness, specs and states come from the watch: once every rollout has started, a
    tick sends no LIST and no GET of ModelCanaries or InferenceServices."""
    names = [f"yaks-{index}" for index in range(3)]
    start_rollouts(api, namespace, monitoring[1], names, interval="1h")
    operator.start()
    until(lambda: started(api, namespace, names), 60, "not every rollout started")
    before, ticks = apiserver.requests(), metric_value(operator.metrics_url, TICKS)
    time.sleep(4)
    served = apiserver.requests() - before
    assert metric_value(operator.metrics_url, TICKS) - ticks >= 2
    for verb in ("LIST", "GET"):
        for resource in ("modelcanaries", "inferenceservices"):
            assert served[f"{verb} {resource}"] == 0, served


def test_a_spec_change_and_a_delete_reach_the_tick(
    apiserver: ApiServer,
    api: client.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
    monitoring: tuple[Prometheus, Traffic],
) -> None:
    """A rollout waiting an hour is promoted once its interval is changed to 2 s; a deleted
    one is back on stable and no tick writes to it after."""
    start_rollouts(api, namespace, monitoring[1], ["lynx", "mice"], steps=[30, 100], interval="1h")
    operator.start()
    until(lambda: started(api, namespace, ["lynx", "mice"]), 60, "not every rollout started")
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "lynx", {"spec": {"interval": "2s"}}
    )
    until(
        lambda: status(api, namespace, "lynx").get("phase") == "Promoted",
        60,
        "the new interval was not used",
    )
    assert canary_percent(api, namespace, "mice") == 30
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "mice")
    until(lambda: canary_percent(api, namespace, "mice") == 0, 30, "not back on stable")
    missing = apiserver.requests(code="404")
    ticks = metric_value(operator.metrics_url, TICKS)
    until(lambda: metric_value(operator.metrics_url, TICKS) >= ticks + 3, 30, "no ticks")
    assert canary_percent(api, namespace, "mice") == 0
    assert (apiserver.requests(code="404") - missing)["PATCH modelcanaries/status"] == 0


def test_the_copy_keeps_our_last_write_over_an_earlier_one_not_over_someone_elses(
    api: client.CustomObjectsApi, namespace: str, crds: None
) -> None:
    """A tick that wrote twice may see the watch bring its first write after the tick read
    the copy: its last write replaces that one, but not a body it did not write."""
    create_canary(api, namespace, model_canary("stoats", "stoats"))
    copy = Watched(api, (GROUP, VERSION, PLURAL), namespace).start()

    def written(message: str) -> dict[str, Any]:
        found: dict[str, Any] = api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "stoats", {"status": {"message": message}}
        )
        return found

    try:
        read = until(lambda: copy.items(timeout=30).get("stoats"), 30, "not in the copy")
        first = written("first")
        until(
            lambda: copy.items()["stoats"].get("status", {}).get("message") == "first",
            30,
            "the watch did not bring the first write",
        )
    finally:
        copy.stop()  # nothing more from the watch: the copy holds the first write
    second = written("second")
    versions = [body["metadata"]["resourceVersion"] for body in (first, second)]
    copy.wrote(read, second, versions[1:])  # the first write was not ours: kept
    assert copy.items()["stoats"]["status"]["message"] == "first"
    copy.wrote(read, second, versions)  # it was ours, and older than the second
    assert copy.items()["stoats"]["status"]["message"] == "second"


def test_a_late_watch_event_of_our_earlier_write_does_not_replace_our_later_one(
    api: client.CustomObjectsApi, namespace: str, crds: None
) -> None:
    """Issue 26: with ticks back to back, the watch brought a tick's first write after the
    answer to its second was in the copy, and the next tick's write was refused (409).
    The events are the real server's bodies, delivered in the order that race makes."""
    create_canary(api, namespace, model_canary("voles", "voles"))
    copy = Watched(api, (GROUP, VERSION, PLURAL), namespace).start()
    try:
        read = until(lambda: copy.items(timeout=30).get("voles"), 30, "not in the copy")
    finally:
        copy.stop()
    first, second = (
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "voles", {"status": {"message": message}}
        )
        for message in ("first", "second")
    )
    copy.wrote(
        read, second, [first["metadata"]["resourceVersion"], second["metadata"]["resourceVersion"]]
    )
    copy._apply("MODIFIED", first)  # the watch's late event of the first write
    assert copy.items()["voles"]["status"]["message"] == "second"
    api.patch_namespaced_custom_object_status(  # another writer's, later: it replaces ours
        GROUP, VERSION, namespace, PLURAL, "voles", {"status": {"message": "third"}}
    )
    third = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "voles")
    copy._apply("MODIFIED", third)
    assert copy.items()["voles"]["status"]["message"] == "third"


def test_a_deleted_rollout_leaves_nothing_in_the_operators_bookkeeping(
    apiserver: ApiServer,
    api: client.CustomObjectsApi,
    namespace: str,
    crds: None,
    monitoring: tuple[Prometheus, Traffic],
) -> None:
    """What the operator keeps per ModelCanary (its last seen generation and intent, its
    parsed spec and state) is dropped by the first tick after the ModelCanary is gone, so
    an operator whose namespace sees many rollouts come and go does not grow."""
    config = OperatorConfig(
        namespace,
        monitoring[0].url,
        source=SOURCE,
        window_s=parse_duration(WINDOW),
        tick_s=1.0,
        kubeconfig=apiserver.kubeconfig,
    )
    runtime = build_runtime(config)
    runtime.canaries.start()
    runtime.services.start()
    try:
        start_rollouts(api, namespace, monitoring[1], ["voles"], interval="1h")
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "voles", {"metadata": {"finalizers": [FINALIZER]}}
        )
        until(lambda: "voles" in runtime.seen, 30, "the watch did not notice the rollout")
        tick(runtime)
        assert "voles" in runtime.specs and "voles" in runtime.states
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "voles")
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "voles", {"metadata": {"finalizers": None}}
        )
        until(lambda: "voles" not in runtime.canaries.items(), 30, "the delete did not arrive")
        tick(runtime)
        assert "voles" not in runtime.seen
        assert "voles" not in runtime.specs and "voles" not in runtime.states
    finally:
        runtime.canaries.stop()
        runtime.services.stop()


def test_heartbeat_writes_stay_within_the_budget_and_reach_every_rollout(
    apiserver: ApiServer,
    api: client.CustomObjectsApi,
    namespace: str,
    crds: None,
    monitoring: tuple[Prometheus, Traffic],
) -> None:
    """Six holding rollouts, a 2 s heartbeat and a budget of two heartbeat writes per tick:
    no tick writes more than two statuses that only refresh the checks (a step, or a verdict
    that changed, is written at once and not counted), and every rollout's status is
    refreshed within the heartbeat plus one tick per two rollouts."""
    names = [f"newts-{index}" for index in range(6)]
    runtime = build_runtime(
        OperatorConfig(
            namespace,
            monitoring[0].url,
            source=SOURCE,
            window_s=parse_duration(WINDOW),
            tick_s=1.0,
            kubeconfig=apiserver.kubeconfig,
            heartbeat_s=2.0,
            heartbeats_per_tick=2,
        )
    )
    runtime.canaries.start()
    runtime.services.start()

    def statuses() -> dict[str, tuple[str, dict[str, Any]]]:
        return {
            name: (body["metadata"]["resourceVersion"], body.get("status") or {})
            for name, body in runtime.canaries.items(timeout=30).items()
        }

    try:
        start_rollouts(api, namespace, monitoring[1], names, interval="1h")
        for name in names:
            api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"finalizers": [FINALIZER]}}
            )
        until(lambda: len(runtime.seen) == len(names), 30, "the watch did not see the rollouts")
        until(lambda: tick(runtime) or started(api, namespace, names), 60, "not all started")
        refreshed: set[str] = set()
        most = 0
        for _ in range(12):  # past the heartbeat, then three ticks per round of six
            time.sleep(0.5)
            before = statuses()
            tick(runtime)
            beats = {
                name
                for name, (version, status) in statuses().items()
                if version != before[name][0] and _same_step_and_verdict(before[name][1], status)
            }
            most, refreshed = max(most, len(beats)), refreshed | beats
        assert 1 <= most <= 2, most
        assert refreshed == set(names)
    finally:
        runtime.canaries.stop()
        runtime.services.stop()


def _same_step_and_verdict(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """NEW only refreshes OLD's checks: same phase, step, weight and verdict."""

    def settled(status: dict[str, Any]) -> tuple[Any, ...]:
        state = status.get("state") or {}
        result = (state.get("analysis") or {}).get("result")
        return status.get("phase"), state.get("step"), state.get("weight"), result

    return settled(old) == settled(new)
