"""The ModelCanary operator: kopf drives the same engine as the local mode.

A daemon per ModelCanary ticks the engine every `--tick` (at once when the Alertmanager
webhook, served beside it, hears a new alert for the model). The metrics source is shared
and grouped: one set of Prometheus queries per tick serves every rollout. State lives in
each resource's status (written with resourceVersion preconditions); traffic is routed on
the InferenceService (Serverless) or the HTTPRoute (Standard). A spec the engine would
refuse gets phase Invalid and a condition naming the field. Deleting a ModelCanary that
was not promoted puts all traffic back on the stable version. kopf's peering keeps one
active instance when several run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from kubernetes import client
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from modelcanary.alerts import promql as q
from modelcanary.alerts.notifier import AlertmanagerNotifier
from modelcanary.alerts.webhook import AlertBook, WebhookAlert, create_app
from modelcanary.asgi_server import AppServer
from modelcanary.errors import ModelcanaryError, UsageError
from modelcanary.kube.api import custom_objects, model_canary
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.kube.kserve_router import ServerlessRouter, StandardRouter
from modelcanary.kube.status_store import StatusStore, progressing_condition
from modelcanary.metrics_contract import set_role
from modelcanary.rollout.alert_feed import pushed_alerts
from modelcanary.rollout.engine import Engine, Rollout, Router
from modelcanary.rollout.golden_check import run_golden_check
from modelcanary.rollout.judge import FiringAlert, Observations
from modelcanary.rollout.prometheus_source import PrometheusSource, RolloutKey
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.stepper import GoldenResult

MODE_ANNOTATION = "modelcanary.io/mode"
ISVC_ANNOTATION = "modelcanary.io/inference-service"
log = logging.getLogger("modelcanary.operator")


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
    model_repo: Path | None = None  # a mounted model repository for the golden check
    predictor_url: str = "http://{isvc}-predictor.{namespace}.svc.cluster.local"
    api_host: str | None = None  # tests: a plain API server URL instead of kubeconfig


class SharedSource:
    """One grouped observation per tick for every rollout this operator drives."""

    def __init__(self, source: PrometheusSource, max_age_s: float) -> None:
        self.source, self.max_age_s = source, max_age_s
        self.keys: dict[RolloutKey, float] = {}
        self.seen: dict[RolloutKey, Observations] = {}
        self.at = 0.0
        self.lock = threading.Lock()

    def observe(self, rollouts: Sequence[RolloutKey]) -> dict[RolloutKey, Observations]:
        with self.lock:
            now = time.monotonic()
            for key in rollouts:
                self.keys[key] = now
            self.keys = {k: t for k, t in self.keys.items() if now - t < 10 * self.max_age_s}
            stale = now - self.at > self.max_age_s or any(k not in self.seen for k in rollouts)
            if stale:
                self.seen = self.source.observe(list(self.keys))
                self.at = now
            return {key: self.seen[key] for key in rollouts}


@dataclass
class Runtime:
    """What the handlers share, built at startup."""

    config: OperatorConfig
    api: client.CustomObjectsApi
    engine: Engine
    book: AlertBook
    wakers: dict[str, threading.Event] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    servers: list[AppServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.weight = Gauge(
            q.ROLLOUT_WEIGHT, "Percent of the model's traffic routed to the version",
            ["namespace", "model", "version"], registry=self.registry,
        )  # fmt: skip
        self.role = Gauge(
            q.ROLLOUT_ROLE, "1 for each version with its role in the rollout",
            ["namespace", "model", "version", "role"], registry=self.registry,
        )  # fmt: skip

    def waker(self, model: str) -> threading.Event:
        return self.wakers.setdefault(model, threading.Event())


RUNTIME: Runtime | None = None


def configure(config: OperatorConfig) -> Runtime:
    """Build the shared runtime (before kopf starts)."""
    global RUNTIME
    book = AlertBook()
    api = custom_objects(config.api_host)
    source = SharedSource(
        PrometheusSource(config.prometheus, config.source, config.window_s), config.tick_s / 2
    )
    notifier = AlertmanagerNotifier(config.alertmanager) if config.alertmanager else None
    runtime = Runtime(config, api, Engine(source, notifier, pushed=_pushed(book)), book)
    book.listener = lambda alert: _wake(runtime, alert)
    RUNTIME = runtime
    return runtime


def _pushed(book: AlertBook) -> Callable[[str], tuple[FiringAlert, ...]]:
    def firing(model: str) -> tuple[FiringAlert, ...]:
        return pushed_alerts((a.labels for a in book.firing()), model)

    return firing


def _wake(runtime: Runtime, alert: WebhookAlert) -> None:
    model = alert.labels.get("model")
    if model is not None:
        runtime.waker(model).set()


def _runtime() -> Runtime:
    if RUNTIME is None:
        raise RuntimeError("modelcanary.kube.operator.configure() was not called")
    return RUNTIME


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    host = _runtime().config.api_host
    if host is not None:
        return kopf.ConnectionInfo(server=host, insecure=True)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def run(config: OperatorConfig, peering: str | None, stop: threading.Event | None = None) -> None:
    """Run the operator until stopped (Ctrl-C, SIGTERM, or `stop`)."""
    configure(config)
    kopf.run(
        namespaces=[config.namespace],
        standalone=peering is None,
        peering_name=peering,
        clusterwide=False,
        stop_flag=stop,
    )


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    runtime = _runtime()
    settings.posting.level = logging.WARNING
    # The operator's Role is namespaced: it may not list namespaces, so it does not try.
    settings.scanning.disabled = True
    settings.persistence.finalizer = "modelcanary.io/finalizer"
    config = runtime.config
    if config.webhook_token:
        webhook = AppServer(
            create_app(runtime.book, config.webhook_token), host="0.0.0.0",
            port=config.webhook_port, name="Alertmanager webhook receiver",
        )  # fmt: skip
        webhook.start()
        runtime.servers.append(webhook)
    metrics = AppServer(
        _metrics_app(runtime), host="0.0.0.0", port=config.metrics_port,
        name="operator metrics",
    )  # fmt: skip
    metrics.start()
    runtime.servers.append(metrics)


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    runtime = _runtime()
    runtime.book.closed = True
    while runtime.servers:
        runtime.servers.pop().stop()


def _metrics_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="modelcanary operator", docs_url=None, redoc_url=None)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(runtime.registry).decode())

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=30)
def rollout_daemon(
    *, name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """Tick this rollout until the resource goes away or the operator stops."""
    runtime = _runtime()
    model = None
    namespace = namespace or runtime.config.namespace
    while not stopped:
        try:
            model = tick(runtime, namespace, name)
        except ModelcanaryError as exc:
            log.warning("%s/%s: %s", namespace, name, exc)
        waker = runtime.waker(model or name)
        deadline = time.monotonic() + runtime.config.tick_s
        while not stopped and not waker.is_set() and time.monotonic() < deadline:
            stopped.wait(0.2)
        waker.clear()


def tick(runtime: Runtime, namespace: str, name: str) -> str | None:
    """One engine tick for one ModelCanary; returns the model name (None when invalid)."""
    resource = model_canary(runtime.api, namespace, name)
    body = resource.get()
    metadata: dict[str, Any] = body.get("metadata", {})
    try:
        spec = parse_spec(body.get("spec"), f"ModelCanary {namespace}/{name}")
    except UsageError as exc:
        _invalid(resource, str(exc), body)
        return None
    rollout = build_rollout(runtime, namespace, name, spec, metadata.get("annotations", {}))
    result = runtime.engine.tick([rollout])[0]
    for problem in result.problems:
        log.warning("%s/%s: %s", namespace, name, problem)
    _export(runtime, namespace, spec, result.state.weight, result.state.phase)
    return spec.model


def build_rollout(
    runtime: Runtime, namespace: str, name: str, spec: RolloutSpec, annotations: dict[str, str]
) -> Rollout:
    mode = annotations.get(MODE_ANNOTATION, "serverless")
    isvc = annotations.get(ISVC_ANNOTATION, spec.model)
    stable, canary = spec.stable.version, spec.canary.version
    router: ServerlessRouter | StandardRouter
    if mode == "standard":
        router = StandardRouter(runtime.api, namespace, isvc, spec.model, stable, canary)
        url_name = f"{spec.model}-v{canary}"
    else:
        router = ServerlessRouter(runtime.api, namespace, isvc, stable, canary)
        url_name = isvc
    config = runtime.config
    url = config.predictor_url.format(isvc=url_name, namespace=namespace)
    repo = config.model_repo

    def golden() -> GoldenResult:
        if repo is None:
            return GoldenResult(True, "not checked: the operator has no --model-repo mounted")
        return run_golden_check(url, repo, spec.model, canary)

    typed: Router = router
    return Rollout(
        name=f"{namespace}/{name}",
        spec=spec,
        store=StatusStore(model_canary(runtime.api, namespace, name)),
        router=typed,
        golden=golden,
        readiness=router.canary_ready,
    )


def _invalid(resource: Any, message: str, body: dict[str, Any]) -> None:
    status = body.get("status", {})
    if status.get("phase") == "Invalid" and status.get("message") == message:
        return
    condition = progressing_condition(False, "InvalidSpec", message)
    resource.patch(
        {"status": {"phase": "Invalid", "message": message, "conditions": [condition]}},
        status=True,
    )
    log.warning("%s", message)


def _export(runtime: Runtime, namespace: str, spec: RolloutSpec, weight: int, phase: str) -> None:
    stable, canary = spec.stable.version, spec.canary.version
    promoted = phase == "Promoted"
    runtime.weight.labels(namespace, spec.model, stable).set(0 if promoted else 100 - weight)
    runtime.weight.labels(namespace, spec.model, canary).set(100 if promoted else weight)
    roles = (
        {stable: "canary", canary: "stable"} if promoted else {stable: "stable", canary: "canary"}
    )
    for version, role in roles.items():
        set_role(runtime.role, (namespace, spec.model, version), role)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(*, name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    """Leave traffic on the stable version unless the canary was promoted."""
    runtime = _runtime()
    namespace = namespace or runtime.config.namespace
    try:
        spec = parse_spec(dict(body.get("spec", {})), f"ModelCanary {namespace}/{name}")
    except UsageError:
        return
    phase = body.get("status", {}).get("phase")
    if phase == "Promoted":
        return
    rollout = build_rollout(runtime, namespace, name, spec, dict(body.metadata.annotations))
    rollout.router.route(0, promoted=False)
    log.info("%s/%s deleted: all traffic back on version %s", namespace, name, spec.stable.version)
