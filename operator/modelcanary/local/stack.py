"""`modelcanary up`: the whole local serving and alerting loop, on one machine.

Triton (every version of each model side by side), the gateway in front of it with the
shadow comparator inside it (it reads the repository's manifests), the controller's
Alertmanager webhook receiver, a local on-call receiver, Alertmanager routing to them,
and Prometheus scraping Triton and the gateway and evaluating the rules of a profile.
Everything listens on 127.0.0.1 and lives in one run directory, on the ports kept in its
ports.json (free ones the first time; see modelcanary.local.run_dir), so the URLs in
up.json stay the same from one `up` to the next, also after `up` was killed. Once all
run, a supervisor (modelcanary.local.supervisor) restarts any part that dies or hangs
(fails its health check a few times in a row), on the same ports.

With `replicas` > 1, Triton runs as that many processes (parts `triton-0`, `triton-1`,
...; each with its own ports, run directory and shared-memory prefix, the same
repository, versions and fault directory), the gateway balances each version over them
(modelcanary.gateway.replicas) and Prometheus scrapes each as a target of its own (its
`instance` label tells their counters apart, as the rules' per-replica counters need).
The gateway's own series need no replica label: the gateway is one process, whose
counters a Triton replica's restart does not reset.

Several models (`StackOptions.other_models`) share every part: Triton loads each, the
gateway routes each with its own split, and the rules, labelled by model, judge each
apart; each model's rollouts live under `<run dir>/rollouts/<model>/`
(modelcanary.local.controller).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelcanary.alerts import oncall, rules
from modelcanary.alerts.alertmanager import TIMINGS, WEBHOOK_PATH, Routing, Webhook
from modelcanary.alerts.alertmanager import render as render_routing
from modelcanary.alerts.profile import load_profile
from modelcanary.alerts.webhook import AlertBook, WebhookAlert, create_app
from modelcanary.asgi_server import AppServer
from modelcanary.files import token_file
from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.grpc_server import GrpcServer
from modelcanary.gateway.server import GatewayServer
from modelcanary.local.monitoring import Alertmanager, Prometheus, ScrapeTarget, prometheus_config
from modelcanary.local.run_dir import PortBook, RunDirLock, resumed_split, stop_leftovers
from modelcanary.local.stack_models import ModelPlan, ServedModel, plan
from modelcanary.local.supervisor import HealthCheck, Part, Supervisor
from modelcanary.serving.triton_server import Endpoints, TritonServer

SCRAPE_INTERVAL = {"demo": "1s", "production": "15s"}


class _Stoppable(Protocol):
    def stop(self) -> object: ...


@dataclass(frozen=True)
class StackOptions:
    repo: Path
    model: str
    stable: int
    canary: int | None = None
    run_dir: Path = Path(".modelcanary/up")
    profile: str = "demo"
    canary_weight: int = 0
    versions: tuple[int, ...] = ()  # served versions; empty: every version in the repository
    profile_overrides: tuple[str, ...] = ()
    port: int | None = None  # the gateway's; default: kept in ports.json, or a free one
    replicas: int = 1  # Triton processes, each serving every version
    other_models: tuple[ServedModel, ...] = ()  # served beside `model`, each its own split

    @property
    def models(self) -> tuple[ServedModel, ...]:
        first = ServedModel(self.model, self.stable, self.canary, self.canary_weight)
        return (first, *self.other_models)


def replica_name(index: int) -> str:
    """A Triton replica's part name (parts.json, supervisor.log)."""
    return f"triton-{index}"


def replica_ports(index: int) -> tuple[str, str, str]:
    """A Triton replica's names in ports.json: replica 0 keeps the names of the single
    Triton (`triton_http`, ...), so a run directory's URLs stay as they were."""
    prefix = "triton" if index == 0 else replica_name(index)
    return f"{prefix}_http", f"{prefix}_grpc", f"{prefix}_metrics"


@dataclass
class LocalStack:
    """Start in order, stop in reverse; a failure while starting stops what already runs."""

    options: StackOptions
    say: Callable[[str], None] = print
    book: AlertBook = field(init=False)
    urls: dict[str, str] = field(default_factory=dict)
    tritons: list[TritonServer] = field(default_factory=list)  # its replicas
    replicas: list[dict[str, str]] = field(default_factory=list)  # up.json's `triton`
    models: list[ModelPlan] = field(default_factory=list)  # as it started serving them
    gateway: GatewayServer | None = None
    prometheus: Prometheus | None = None
    alertmanager: Alertmanager | None = None
    supervisor: Supervisor = field(init=False)
    lock: RunDirLock | None = None
    _running: list[_Stoppable] = field(default_factory=list)
    _parts: dict[str, Part] = field(default_factory=dict)
    _health: dict[str, HealthCheck] = field(default_factory=dict)  # of the process parts

    def __post_init__(self) -> None:
        self.book = AlertBook(listener=self._heard)
        self.supervisor = Supervisor(say=self.say)

    def _heard(self, alert: WebhookAlert) -> None:
        labels = alert.labels
        self.say(
            f"controller webhook: {labels.get('alertname')} {labels.get('severity')} for "
            f"{labels.get('model')}:{labels.get('version')} ({labels.get('source', '-')})"
        )

    def start(self) -> dict[str, str]:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, str]:
        o = self.options
        profile = load_profile(o.profile, list(o.profile_overrides))
        models = plan(o.repo, o.models, o.versions)  # checked before anything starts
        run = o.run_dir.resolve()
        lock = RunDirLock(run)
        previous_up = lock.acquire()  # refused while another `up` runs here
        self.lock = lock
        stop_leftovers(run, previous_up, self.say)
        ports = PortBook(run, {"gateway": o.port} if o.port else None)
        ports.check()
        models = [resumed_plan(model, run, self.say) for model in models]

        shutil.rmtree(run / "faults", ignore_errors=True)  # faults never outlive a run
        (run / "oncall.jsonl").unlink(missing_ok=True)  # nor do the last run's pages
        replicas = [self._start_triton(i, ports, models) for i in range(o.replicas)]
        endpoints = replicas[0]

        gateway_token = token_file(run / "gateway.token")
        config = parse_config(
            {
                "models": {
                    model.name: {
                        "stable": model.stable,
                        "upstreams": {str(v): [e.http for e in replicas] for v in model.versions},
                        "grpc_upstreams": {
                            str(v): [e.grpc for e in replicas] for v in model.versions
                        },
                        "weights": model.weights,
                    }
                    for model in models
                },
                "shadow": {"repository": str(o.repo.resolve())},
            },
            "up",
        )
        gateway = Gateway(config, gateway_token, say=self.say)
        self.gateway = GatewayServer(gateway, port=ports.port("gateway"))
        self._running.append(self.gateway)
        self.gateway.start()
        self._parts["gateway"] = self.gateway
        gateway_grpc = GrpcServer(gateway, port=ports.port("gateway_grpc"))
        self._running.append(gateway_grpc)
        gateway_grpc.start()
        self._parts["gateway gRPC"] = gateway_grpc

        controller_token_path = run / "controller.token"
        controller = AppServer(
            create_app(self.book, token_file(controller_token_path)),
            port=ports.port("controller_webhook"),
            name="controller webhook",
        )
        self._running.append(controller)
        controller.start()
        self._parts["controller webhook"] = controller
        pager_token_path = run / "oncall.token"
        pager = AppServer(
            oncall.create_app(run / "oncall.jsonl", token_file(pager_token_path), sys.stdout),
            port=ports.port("oncall"),
            name="on-call receiver",
        )
        self._running.append(pager)
        pager.start()
        self._parts["on-call receiver"] = pager

        self.alertmanager = Alertmanager(run, ports.port("alertmanager"))
        self._running.append(self.alertmanager)
        routing = Routing(
            controller=Webhook(
                type="webhook",
                url=controller.url + WEBHOOK_PATH,
                bearer_token_file=str(controller_token_path),
            ),
            oncall=Webhook(
                type="webhook", url=f"{pager.url}/oncall", bearer_token_file=str(pager_token_path)
            ),
            chat=Webhook(
                type="webhook", url=f"{pager.url}/chat", bearer_token_file=str(pager_token_path)
            ),
            timing=TIMINGS[o.profile],
        )
        self.alertmanager.start(render_routing(routing))
        self._parts["alertmanager"] = self.alertmanager
        self._health["alertmanager"] = HealthCheck(f"{self.alertmanager.url}/-/ready")

        rule_file = run / "rules.yml"
        rule_file.write_text(rules.render(profile))
        self.prometheus = Prometheus(run, ports.port("prometheus"))
        self._running.append(self.prometheus)
        self.prometheus.start(
            prometheus_config(
                [
                    *(ScrapeTarget("triton", f"127.0.0.1:{e.metrics_port}") for e in replicas),
                    ScrapeTarget("gateway", f"{self.gateway.host}:{self.gateway.port}"),
                ],
                [rule_file],
                f"127.0.0.1:{self.alertmanager.port}",
                SCRAPE_INTERVAL[o.profile],
                self.alertmanager.password_file,
            )
        )
        self._parts["prometheus"] = self.prometheus
        self._health["prometheus"] = HealthCheck(f"{self.prometheus.url}/-/ready")
        self.prometheus.wait_for_targets()

        self.urls = {
            "gateway": self.gateway.url,
            "gateway_grpc": gateway_grpc.address,
            "gateway_admin_token_file": str(run / "gateway.token"),
            "triton_http": endpoints.http,  # replica 0's (see `triton` for every replica)
            "triton_grpc": endpoints.grpc,
            "triton_metrics": endpoints.metrics,
            "prometheus": self.prometheus.url,
            "alertmanager": self.alertmanager.url,
            "alertmanager_password_file": str(self.alertmanager.password_file),
            "controller_webhook": controller.url + WEBHOOK_PATH,
            "oncall": pager.url,
            "oncall_log": str(run / "oncall.jsonl"),
            "faults_dir": str(run / "faults"),
            "run_dir": str(run),
            "repo": str(o.repo.resolve()),
            **({"model": o.model} if len(models) == 1 else {}),  # see `models` for every one
            "profile": o.profile,
            "prometheus_window": profile.window,
        }
        self.supervisor = Supervisor(run, self.say)
        for name, part in self._parts.items():
            self.supervisor.watch(name, part, self._health.get(name))
        self.replicas = [
            {"part": replica_name(i), "http": e.http, "grpc": e.grpc, "metrics": e.metrics}
            for i, e in enumerate(replicas)
        ]
        self.models = models
        document = {**self.urls, "triton": self.replicas, "models": [m.document() for m in models]}
        (run / "up.json").write_text(json.dumps(document, indent=2) + "\n")
        return self.urls

    def _start_triton(self, index: int, ports: PortBook, models: list[ModelPlan]) -> Endpoints:
        """Start replica `index` of Triton, serving every model; a supervised part."""
        o, run = self.options, self.options.run_dir.resolve()
        directory = run / ("triton" if index == 0 else replica_name(index))
        directory.mkdir(exist_ok=True)
        triton = TritonServer(o.repo, directory, faults_dir=run / "faults")
        self._running.append(triton)
        self.tritons.append(triton)
        http, grpc, metrics = (ports.port(name) for name in replica_ports(index))
        endpoints = triton.start(endpoints=Endpoints(http, grpc, metrics))
        for model in models:
            triton.load(model.name, model.versions)
        name = replica_name(index)
        self._parts[name] = triton
        self._health[name] = HealthCheck(f"{endpoints.http}/v2/health/ready")
        served = "; ".join(f"{m.name} versions {', '.join(map(str, m.versions))}" for m in models)
        self.say(f"Triton ready ({name}): {served}")
        return endpoints

    def stop(self) -> None:
        self.supervisor.stop()  # no restarts from here on
        self.book.closed = True
        while self._running:
            part = self._running.pop()
            try:
                part.stop()
            except Exception as exc:  # keep stopping the others
                self.say(f"stopping {type(part).__name__} failed: {exc}")
        self.supervisor.join()
        if self.lock is not None:  # the run directory is this `up`'s
            (self.options.run_dir / "up.json").unlink(missing_ok=True)
            self.lock.release()
            self.lock = None


def resumed_plan(model: ModelPlan, run_dir: Path, say: Callable[[str], None]) -> ModelPlan:
    """The model with the split its unfinished rollout in the run directory left, if any."""
    found = resumed_split(run_dir, model.name, model.versions, say)
    if found is None:
        return model
    stable, weights = found
    every = {version: 0 for version in model.weights} | weights
    return ModelPlan(model.name, model.versions, stable, every)


def describe(urls: dict[str, Any]) -> list[str]:
    return [f"  {name:<25} {value}" for name, value in urls.items()]
