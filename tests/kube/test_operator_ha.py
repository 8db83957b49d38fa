"""Two operator replicas on a real API server: one acts, the other takes over when it dies.

Both replicas are `modelcanary operator` processes with the same `--leader-election` Lease
and different identities, running as the chart's service account with the chart's Role.
A real Prometheus scrapes an exporter that makes the canary healthy; no KServe controller
runs, so the test marks the InferenceService Ready. The leader is SIGKILLed after the
first advance (no cleanup, the Lease is not released): the standby must take the Lease
over once it expires and continue the rollout at the step it had reached. A SIGTERMed
leader hands the Lease over at once, and an API server outage does not end the ticks.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelcanary.adapters.kserve_router import KSERVE
from modelcanary.alerts import promql as q
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.local.monitoring import Prometheus
from tests.conftest import metric_samples
from tests.support.apiserver import REPO, ApiServer, write_kubeconfig
from tests.support.operator_process import OperatorProcess
from tests.support.rollouts import create_canary, create_ready_service, model_canary
from tests.support.tcp_proxy import TcpProxy
from tests.support.traffic import SOURCE, WINDOW, Traffic, traffic_prometheus
from tests.support.waits import until

pytestmark = pytest.mark.slow
LEASE = "modelcanary-operator"
RELEASE = "mc"  # the chart's fullname is then mc-modelcanary: the Role and service account
ACCOUNT = f"{RELEASE}-modelcanary"
TAKEOVER_LIMIT_S = 30.0


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Traffic]]:
    with traffic_prometheus(tmp_path_factory.mktemp("prometheus")) as found:
        yield found


def chart_account(server: ApiServer, namespace: str) -> Path:
    """A kubeconfig for the chart's service account, bound to the chart's own Role."""
    helm = str(Path(sys.executable).with_name("helm"))
    rbac = subprocess.run(
        [
            helm,
            "template",
            RELEASE,
            str(REPO / "charts" / "modelcanary"),
            "--namespace",
            namespace,
            "--show-only",
            "templates/rbac.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    server.kubectl("apply", "-n", namespace, "-f", "-", input=rbac)
    return server.token_for(ACCOUNT, namespace)


class Recorder:
    """Polls READ every 0.1 s in a thread and records each change as (time, value)."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read
        self.changes: list[tuple[float, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                value = self.read()
            except ApiException:
                value = "unreadable"
            if not self.changes or self.changes[-1][1] != value:
                self.changes.append((time.time(), value))
            self.stop.wait(0.1)

    def values(self) -> list[Any]:
        return [value for _, value in self.changes]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def rollout_series(metrics_url: str) -> list[dict[str, str]]:
    """The operator's per-rollout weight gauges: only a replica that ticks exports them."""
    return [labels for name, labels, _ in metric_samples(metrics_url) if name == q.ROLLOUT_WEIGHT]


class Replicas:
    """Two operator replicas with one Lease, as the chart's service account."""

    def __init__(self, server: ApiServer, namespace: str, prometheus: str, logs: Path) -> None:
        self.namespace = namespace
        kubeconfig = chart_account(server, namespace)
        admin = config.new_client_from_config(config_file=str(server.kubeconfig))
        self.api, self.leases = client.CustomObjectsApi(admin), client.CoordinationV1Api(admin)
        self.replicas = {
            identity: OperatorProcess(
                kubeconfig,
                namespace,
                prometheus,
                logs / f"{identity}.log",
                f"--source={SOURCE}",
                f"--window={WINDOW}",
                "--tick=1s",
                f"--leader-election={LEASE}",
                f"--identity={identity}",
            )
            for identity in ("replica-a", "replica-b")
        }

    def start(self) -> tuple[str, str]:
        """Start both at once (they race for the Lease); the leader's and standby's names."""
        for replica in self.replicas.values():
            replica.spawn()
        for replica in self.replicas.values():
            replica.wait_ready()
        leader: str = until(self.holder, 30, "no replica took the Lease")
        return leader, next(identity for identity in self.replicas if identity != leader)

    def holder(self) -> str | None:
        try:
            lease: Any = self.leases.read_namespaced_lease(LEASE, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        found: str | None = lease.spec.holder_identity or None
        return found

    def stop(self) -> None:
        for identity, replica in self.replicas.items():
            replica.stop()
            print(f"--- {identity} log ends:\n{replica.tail()}")  # shown when a test fails

    def log(self, identity: str) -> str:
        return self.replicas[identity].log.read_text(errors="replace")


@pytest.fixture
def pair(
    apiserver: ApiServer,
    namespace: str,
    crds: None,
    monitoring: tuple[Prometheus, Traffic],
    tmp_path: Path,
) -> Iterator[Replicas]:
    replicas = Replicas(apiserver, namespace, monitoring[0].url, tmp_path)
    try:
        yield replicas
    finally:
        replicas.stop()


def test_one_replica_acts_and_the_standby_continues_after_a_kill(
    pair: Replicas, monitoring: tuple[Prometheus, Traffic]
) -> None:
    api, namespace = pair.api, pair.namespace
    model = f"ha-{namespace}"  # this test's own series in the shared Prometheus
    monitoring[1].serve(model)
    create_ready_service(api, namespace, "digits")

    def canary_percent() -> object:
        isvc: Any = api.get_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], "digits")
        return isvc["spec"]["predictor"].get("canaryTrafficPercent", "absent")

    def status() -> dict[str, Any]:
        body: Any = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "digits")
        found: dict[str, Any] = body.get("status", {})
        return found

    holders, weights = Recorder(pair.holder), Recorder(canary_percent)
    try:
        leader_id, standby_id = pair.start()
        leader, standby = pair.replicas[leader_id], pair.replicas[standby_id]

        create_canary(api, namespace, model_canary("digits", model, steps=[25, 50, 100]))
        until(
            lambda: status().get("step") == 2 and status()["state"]["applied"],
            60,
            "the leader never advanced to the second step",
        )
        assert rollout_series(leader.metrics_url), "the leader exports no rollout gauges"
        assert not rollout_series(standby.metrics_url), "the standby ticked the rollouts"
        assert [who for who in holders.values() if who] == [leader_id], holders.changes

        killed_at = time.time()
        leader.kill()
        until(lambda: pair.holder() == standby_id, TAKEOVER_LIMIT_S + 5, "the standby never led")
        until(
            lambda: any(t["at"] > killed_at for t in status()["state"]["history"]),
            TAKEOVER_LIMIT_S + 5,
            "no transition after the leader was killed",
        )
        until(
            lambda: status().get("phase") == "Promoted" and status()["state"]["applied"],
            60,
            "not promoted after the takeover",
        )
        time.sleep(0.5)  # let the recorders see the last change
    finally:
        holders.close()
        weights.close()
        print(f"--- Lease holders: {holders.changes}\n--- weights: {weights.changes}")

    takeover_s = next(t for t, who in holders.changes if who == standby_id) - killed_at
    history = status()["state"]["history"]
    transition_s = next(t["at"] for t in history if t["at"] > killed_at) - killed_at
    print(
        f"\nleader {leader_id} killed; Lease to {standby_id} after {takeover_s:.1f} s, "
        f"next transition after {transition_s:.1f} s"
    )
    assert takeover_s < TAKEOVER_LIMIT_S and transition_s < TAKEOVER_LIMIT_S
    # one holder at a time, and only the two of them: the leader, then the standby
    assert [who for who in holders.values() if who] == [leader_id, standby_id], holders.changes
    assert pair.log(leader_id).count("acquired the lease") == 1, pair.log(leader_id)
    assert pair.log(standby_id).count("acquired the lease") == 1, pair.log(standby_id)
    # no step skipped, none repeated: each transition once, in order, whoever made it
    assert [(t["action"], t["step"], t["weight"]) for t in history] == [
        ("start", 0, 25),
        ("advance", 1, 50),
        ("advance", 2, 100),
        ("promote", 2, 100),
    ], history
    assert [t["at"] for t in history] == sorted(t["at"] for t in history)
    before = [t for t in history if t["at"] < killed_at]
    assert [t["action"] for t in before] == ["start", "advance"], history
    assert weights.values() == ["absent", 25, 50, 100, "absent"], weights.changes
    for identity in pair.replicas:
        assert "unreadable status.state" not in pair.log(identity), pair.log(identity)


def test_a_stopped_leader_hands_the_lease_over_at_once(pair: Replicas) -> None:
    """SIGTERM (a rolling update): the leader releases the Lease; no wait for it to expire."""
    leader_id, standby_id = pair.start()
    stopped_at = time.monotonic()
    pair.replicas[leader_id].stop()
    until(lambda: pair.holder() == standby_id, 10, "the standby did not take the Lease")
    handover_s = time.monotonic() - stopped_at
    print(f"\nleader {leader_id} stopped; Lease to {standby_id} after {handover_s:.1f} s")
    assert handover_s < 5  # the standby looks every tick (1 s); an expiry would take 15 s


def test_the_tick_loop_survives_an_api_server_outage(
    apiserver: ApiServer,
    namespace: str,
    crds: None,
    monitoring: tuple[Prometheus, Traffic],
    tmp_path: Path,
) -> None:
    """A control-plane restart refuses connections for a while: the operator must go on
    ticking once the API server is back (it must not lose its tick loop to the Lease)."""
    prometheus, traffic = monitoring
    proxy = TcpProxy(int(apiserver.url.rsplit(":", 1)[1])).start()
    kubeconfig = write_kubeconfig(
        tmp_path / "proxy.kubeconfig",
        f"https://127.0.0.1:{proxy.port}",
        apiserver.ca_file,
        "admin",
        apiserver.admin_token,
    )
    admin = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    api = client.CustomObjectsApi(admin)
    model = f"outage-{namespace}"
    traffic.serve(model)
    create_ready_service(api, namespace, "digits")
    create_canary(api, namespace, model_canary("digits", model, interval="1h"))

    def analysed_at() -> float:
        body: Any = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "digits")
        state = (body.get("status") or {}).get("state") or {}
        return float((state.get("analysis") or {}).get("at") or 0)

    operator = OperatorProcess(
        kubeconfig,
        namespace,
        prometheus.url,
        tmp_path / "operator.log",
        f"--source={SOURCE}",
        f"--window={WINDOW}",
        "--tick=1s",
        f"--leader-election={LEASE}",
        "--identity=solo",
    )
    try:
        operator.start()
        until(analysed_at, 30, "the operator never ticked")
        proxy.cut()
        time.sleep(3)  # the tick loop meets refused connections
        proxy.start()
        back = time.time()
        until(lambda: analysed_at() > back, 30, "the operator stopped ticking after the outage")
    finally:
        operator.stop()
        proxy.stop()
        print(f"--- operator log ends:\n{operator.tail()}")
