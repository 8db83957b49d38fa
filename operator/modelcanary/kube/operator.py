"""The ModelCanary operator: kopf watches the resources, one loop ticks them all.

One tick loop runs the shared engine over all the namespace's ModelCanaries at once, so
a tick costs one grouped set of Prometheus queries whatever the number of rollouts. It
reads the ModelCanaries and InferenceServices (the canaries' readiness) from watch-fed
copies (modelcanary.kube.watched), not a LIST per tick, and parses each spec once per
`generation`, each `status.state` once per `resourceVersion`. It ticks every `--tick`,
and at once when the watch sees a new spec or intent (a new rollout, a `kubectl canary`
intent) or the Alertmanager webhook, served beside it, hears an alert for a model. State
lives in each resource's status (written with resourceVersion preconditions); traffic is
routed on the InferenceService (Serverless) or the HTTPRoute (Standard). A spec the
engine would refuse gets phase Invalid and a condition naming the field. Deleting a
ModelCanary that was not promoted puts all traffic back on the stable version.

With several replicas, a coordination.k8s.io Lease elects the one whose loop acts; the
others stand by and take over when it stops renewing. The liveness probe follows the tick
loop (it fails once the loop ended or stalled), the readiness probe the Lease (see
modelcanary.kube.health). What the handlers share lives in kopf's memo.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import kopf
from kubernetes import client
from prometheus_client import Counter

from modelcanary.adapters import factory
from modelcanary.adapters.alert_feed import pushed_alerts
from modelcanary.adapters.kserve_router import KSERVE, Services
from modelcanary.adapters.kube_client import KubeError, api_client, kubeconfig_configuration
from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.adapters.status_store import INTENT_ANNOTATION, StatusStore, mark_invalid
from modelcanary.alerts.webhook import AlertBook, WebhookAlert
from modelcanary.errors import ModelcanaryError, UsageError
from modelcanary.kube import operator_servers
from modelcanary.kube.api import model_canary
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.kube.health import LoopPulse, stalled_after
from modelcanary.kube.heartbeat import HEARTBEAT_S, MOVES_PER_S, budget, fresh_since, saved_at
from modelcanary.kube.kopf_glue import NoDiffBase, connection_info
from modelcanary.kube.leader import LeaseElector
from modelcanary.kube.memory import release_free_memory
from modelcanary.kube.rollout_metrics import RolloutMetrics
from modelcanary.kube.rollout_ports import build_rollout
from modelcanary.kube.watched import Watched
from modelcanary.rollout.engine import Engine, TickFailure
from modelcanary.rollout.ports import FiringAlert
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.state import RolloutState

# kopf puts it on every ModelCanary, so that deleting one runs `deleted` (traffic back on
# stable). Its patch changes the resourceVersion and would refuse (409) a status write that
# read the resource before it, so a rollout is ticked only once the finalizer is there.
FINALIZER = "modelcanary.io/finalizer"
log = logging.getLogger("modelcanary.operator")
# A standby takes over this long after the leader last renewed (renewed every third of it).
LEASE_S = 15
# The rollouts tick on this many threads, so that their API writes overlap (the kubernetes
# client keeps 5 connections per core: 10 on 2 cores, one per thread).
TICKERS = 8
GC_THRESHOLDS = (10_000, 10, 10)  # Python's are (700, 10, 10)


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str
    prometheus: str
    source: str = "triton"
    window_s: float = 300.0
    tick_s: float = 10.0
    webhook_port: int = 8081
    metrics_port: int = 8080
    webhook_token: str = ""
    alertmanager: str | None = None  # where promotions, rollbacks and pauses are posted
    model_repo: Path | None = None  # a mounted model repository (else: the storageUri)
    predictor_url: str = "http://{isvc}-predictor.{namespace}.svc.cluster.local"
    kubeconfig: Path | None = None  # None: the pod's service account, else KUBECONFIG
    leader_lease: str | None = None  # Lease name; None: act alone, without election
    identity: str = "modelcanary-operator"  # this replica's name in the Lease
    bind: str = "0.0.0.0"  # where the webhook and metrics servers listen
    comparator: str | None = None  # the shadow comparator's URL; None: no shadow phase
    comparator_token: str = ""  # bearer token of its admin API
    stalled_after_s: float | None = None  # liveness fails after; None: stalled_after(tick_s)
    heartbeat_s: float = HEARTBEAT_S  # a holding rollout's status is written again after
    heartbeats_per_tick: int | None = None  # at most; None: heartbeat.budget(tick_s)
    moves_per_tick: int | None = None  # at most; None: heartbeat.budget(tick_s, MOVES_PER_S)


@dataclass
class Runtime:
    """What the handlers and the tick loop share (kopf's memo)."""

    config: OperatorConfig
    api: client.CustomObjectsApi
    engine: Engine
    book: AlertBook
    elector: LeaseElector | None
    metrics: RolloutMetrics = field(default_factory=RolloutMetrics)
    wake: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    servers: list[Any] = field(default_factory=list)
    seen: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # generation, intent
    # each ModelCanary's spec parsed, by (uid, generation); its state, by resourceVersion
    specs: dict[str, tuple[tuple[Any, Any], RolloutSpec | UsageError]] = field(default_factory=dict)
    states: dict[str, tuple[str, RolloutState]] = field(default_factory=dict)
    loop: threading.Thread | None = None
    lease: threading.Thread | None = None
    comparator: httpx.Client | None = None  # shared by the rollouts' shadow controls
    prometheus: PrometheusSource | None = None  # the engine's source, closed on cleanup
    tickers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(TICKERS, thread_name_prefix="rollout")
    )
    pulse: LoopPulse = field(init=False)  # the tick loop's, for the liveness probe
    canaries: Watched = field(init=False)  # the namespace's ModelCanaries, watch-fed
    services: Watched = field(init=False)  # and its InferenceServices
    ticks: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.pulse = LoopPulse(self.config.stalled_after_s or stalled_after(self.config.tick_s))
        watching = client.CustomObjectsApi(api_client(self.config.kubeconfig))
        namespace = self.config.namespace
        self.canaries = Watched(
            watching, (GROUP, VERSION, PLURAL), namespace, lambda body: noticed(self, body)
        )
        self.services = Watched(watching, KSERVE, namespace)
        self.ticks = Counter(
            "modelcanary_operator_ticks",
            "Ticks of the rollouts this replica ran",
            registry=self.metrics.registry,
        )

    def not_ready(self) -> str | None:
        """The readiness probe: why this replica does not act (None: it does)."""
        return None if self.elector is None else self.elector.not_ready()


def build_runtime(config: OperatorConfig) -> Runtime:
    """The engine and its ports for this operator (before kopf starts)."""
    book = AlertBook()
    api = api_client(config.kubeconfig)
    # a tick waits for a Prometheus read half a tick at most, then goes on with the last
    source = PrometheusSource(
        config.prometheus, config.source, config.window_s, wait_s=config.tick_s / 2
    )
    engine = Engine(
        source,
        factory.notifier(config.alertmanager),
        pushed=_pushed(book),
        heartbeat_s=config.heartbeat_s,
    )
    engine.moves_per_tick = config.moves_per_tick or budget(config.tick_s, MOVES_PER_S)
    elector = None
    if config.leader_lease:
        elector = LeaseElector(
            client.CoordinationV1Api(api),
            config.namespace,
            config.leader_lease,
            config.identity,
            lease_s=LEASE_S,
        )
    runtime = Runtime(
        config, client.CustomObjectsApi(api), engine, book, elector, prometheus=source
    )
    if config.comparator:
        runtime.comparator = httpx.Client(timeout=10.0)
    book.listener = lambda alert: _wake_on(runtime, alert)
    return runtime


def _pushed(book: AlertBook) -> Any:
    def firing(model: str) -> tuple[FiringAlert, ...]:
        return pushed_alerts(book.firing(), model)

    return firing


def _wake_on(runtime: Runtime, alert: WebhookAlert) -> None:
    if alert.labels.get("model"):
        runtime.wake.set()


def run(config: OperatorConfig, stop: threading.Event | None = None) -> None:
    """Run the operator until stopped (Ctrl-C, SIGTERM, or `stop`)."""
    runtime = build_runtime(config)
    # a tick of many rollouts makes many short-lived objects over a large heap: collect
    # the young ones less often, and leave what startup made out of full collections
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    kopf.run(
        namespaces=[config.namespace],
        standalone=True,  # leadership is the Lease's, not kopf peering's
        clusterwide=False,
        stop_flag=stop,
        memo=cast(kopf.Memo, runtime),
    )


@kopf.on.login()
def login(memo: Runtime, **kwargs: Any) -> kopf.ConnectionInfo | None:
    if memo.config.kubeconfig is not None:
        return connection_info(kubeconfig_configuration(memo.config.kubeconfig))
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: Runtime, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    # The operator's Role is namespaced: it may not list namespaces, so it does not try.
    settings.scanning.disabled = True
    settings.persistence.finalizer = FINALIZER
    settings.persistence.diffbase_storage = NoDiffBase()
    memo.pulse.beat()  # the loop starts below; the time kopf took to get here is no stall
    memo.canaries.start()
    memo.services.start()
    memo.servers = operator_servers.start(
        memo.config, memo.book, memo.metrics.registry, memo.pulse.problem, memo.not_ready
    )
    if memo.elector is not None:
        memo.elector.acquire_or_renew()
        memo.lease = threading.Thread(
            target=lease_loop, args=(memo, memo.elector), name="lease", daemon=True
        )
        memo.lease.start()
    memo.loop = threading.Thread(target=tick_loop, args=(memo,), name="ticks", daemon=True)
    memo.loop.start()


@kopf.on.cleanup()
def cleanup(memo: Runtime, **_: Any) -> None:
    memo.stop.set()
    memo.wake.set()
    for thread in (memo.loop, memo.lease):
        if thread is not None:
            thread.join(30)
    if memo.elector is not None:
        memo.elector.release()
    memo.canaries.stop()
    memo.services.stop()
    memo.book.closed = True
    memo.tickers.shutdown(wait=False)
    if memo.prometheus is not None:
        memo.prometheus.close()
    if memo.comparator is not None:
        memo.comparator.close()
    while memo.servers:
        memo.servers.pop().stop()


def noticed(runtime: Runtime, body: dict[str, Any]) -> None:
    """The watch saw a ModelCanary: a new spec or a new intent ticks now rather than at the
    next tick. The operator's own status writes change neither, so they do not wake it."""
    metadata = body.get("metadata", {})
    if FINALIZER not in (metadata.get("finalizers") or ()):
        return  # kopf adds it next, and that change wakes the loop
    seen = (metadata.get("generation"), (metadata.get("annotations") or {}).get(INTENT_ANNOTATION))
    if runtime.seen.get(metadata.get("name", "")) != seen:
        runtime.seen[metadata.get("name", "")] = seen
        runtime.wake.set()


def lease_loop(runtime: Runtime, elector: LeaseElector) -> None:
    """Hold (or wait for) the Lease, looking at least three times per lease and once per
    tick, apart from the ticks: a tick of many rollouts may take longer than a lease."""
    while not runtime.stop.is_set():
        was = elector.leading
        if elector.acquire_or_renew() and not was:
            runtime.wake.set()  # just took over: tick now
        runtime.stop.wait(min(elector.lease_s / 3, runtime.config.tick_s))


def tick_loop(runtime: Runtime) -> None:
    """Tick every rollout while this replica leads, until the operator stops. Each round
    is a beat of the pulse the liveness probe reads. A leader whose renewals hang stops
    acting once its Lease may have expired (its ticks read the watch's copy, which sends
    no request that would hang too)."""
    try:
        while not runtime.stop.is_set():
            runtime.pulse.beat()
            runtime.wake.clear()
            began = time.monotonic()
            if runtime.not_ready() is None:
                try:
                    tick(runtime)
                except ModelcanaryError as exc:
                    log.warning("%s", exc)
                except Exception:  # a bug must not stop every rollout; log it and go on
                    log.exception("tick failed")
                release_free_memory()
            # a tick begins every tick_s (at once after one that took longer)
            runtime.wake.wait(max(0.0, runtime.config.tick_s - (time.monotonic() - began)))
    finally:
        runtime.pulse.end()


def tick(runtime: Runtime) -> None:
    """One engine tick for every valid ModelCanary in the namespace."""
    namespace = runtime.config.namespace
    runtime.ticks.inc()
    listed = runtime.canaries.items(timeout=runtime.config.tick_s)
    services: Services | KubeError
    try:
        services = runtime.services.items(timeout=runtime.config.tick_s)
    except KubeError as exc:  # each rollout's readiness says so; alerts still roll back
        services = exc
    rollouts, read = [], []
    for name, body in listed.items():
        metadata = body["metadata"]
        if metadata.get("deletionTimestamp") or FINALIZER not in (metadata.get("finalizers") or ()):
            continue
        spec = parsed_spec(runtime, name, body)
        if isinstance(spec, UsageError):
            mark_invalid(model_canary(runtime.api, namespace, name), str(spec), body)
            log.warning("%s", spec)
            continue
        rollouts.append(build_rollout(runtime, namespace, name, spec, body, services))
        read.append(body)
    # the rollouts deleted since; a `seen` the watch added after `listed` only wakes again
    for gone in {*runtime.specs, *runtime.states, *list(runtime.seen)} - listed.keys():
        runtime.specs.pop(gone, None)
        runtime.states.pop(gone, None)
        runtime.seen.pop(gone, None)
    config = runtime.config
    saved = [at for body in listed.values() if (at := saved_at(body)) is not None]
    beats = config.heartbeats_per_tick or budget(config.tick_s)
    runtime.engine.fresh_since = fresh_since(saved, time.time(), beats, config.heartbeat_s)
    results = runtime.engine.tick_each(rollouts, runtime.tickers, TICKERS)
    for rollout, body in zip(rollouts, read, strict=True):  # the next tick reads our writes
        store = cast(StatusStore, rollout.store)
        runtime.canaries.wrote(body, store.body, store.written)
    for rollout, result in zip(rollouts, results, strict=True):
        if isinstance(result, TickFailure):
            log.warning("%s: %s", result.rollout, result.problem)
            continue
        for problem in result.problems:
            log.warning("%s: %s", result.rollout, problem)
        runtime.metrics.export(
            namespace, rollout.spec, result.state.weight, result.state.phase, result.state.gate
        )


def parsed_spec(runtime: Runtime, name: str, body: dict[str, Any]) -> RolloutSpec | UsageError:
    """BODY's spec, parsed once per generation (or why the engine refuses it)."""
    metadata = body["metadata"]
    version = (metadata.get("uid"), metadata.get("generation"))
    known = runtime.specs.get(name)
    if known is not None and known[0] == version:
        return known[1]
    try:
        spec: RolloutSpec | UsageError = parse_spec(
            body.get("spec"), f"ModelCanary {runtime.config.namespace}/{name}"
        )
    except UsageError as exc:
        spec = exc
    runtime.specs[name] = (version, spec)
    return spec


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(*, name: str, namespace: str | None, body: kopf.Body, memo: Runtime, **_: Any) -> None:
    """Leave traffic on the stable version unless the canary was promoted."""
    namespace = namespace or memo.config.namespace
    try:
        spec = parse_spec(dict(body.get("spec", {})), f"ModelCanary {namespace}/{name}")
    except UsageError:
        return
    if body.get("status", {}).get("phase") == "Promoted":
        return
    rollout = build_rollout(memo, namespace, name, spec, dict(body), services={})
    rollout.router.route(0, promoted=False)
    if rollout.shadow is not None:
        try:
            rollout.shadow.stop()
        except ModelcanaryError as exc:
            log.warning("%s/%s deleted: %s", namespace, name, exc)
    log.info("%s/%s deleted: all traffic back on version %s", namespace, name, spec.stable.version)
