"""`modelcanary up`: the whole local serving and alerting loop, on one machine.

Triton (every version of the model side by side), the gateway in front of it with the shadow
comparator inside it (it reads the repository's manifests), the controller's
Alertmanager webhook receiver, a local on-call receiver, Alertmanager routing to them,
and Prometheus scraping Triton and the gateway and evaluating the rules of a profile.
Everything listens on 127.0.0.1, on free ports, and lives in one run directory. Once all
run, a supervisor (modelcanary.local.supervisor) restarts any part that dies, on the same
ports, so the URLs in up.json stay valid for the whole run.
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
from modelcanary.errors import UsageError
from modelcanary.files import token_file
from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from modelcanary.local.monitoring import Alertmanager, Prometheus, ScrapeTarget, prometheus_config
from modelcanary.local.supervisor import Part, Supervisor
from modelcanary.modelrepo.repository import ModelRepository
from modelcanary.serving.triton_server import TritonServer

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


@dataclass
class LocalStack:
    """Start in order, stop in reverse; a failure while starting stops what already runs."""

    options: StackOptions
    say: Callable[[str], None] = print
    book: AlertBook = field(init=False)
    urls: dict[str, str] = field(default_factory=dict)
    triton: TritonServer | None = None
    gateway: GatewayServer | None = None
    prometheus: Prometheus | None = None
    alertmanager: Alertmanager | None = None
    supervisor: Supervisor = field(init=False)
    _running: list[_Stoppable] = field(default_factory=list)
    _parts: dict[str, Part] = field(default_factory=dict)

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
        run = o.run_dir.resolve()
        run.mkdir(parents=True, exist_ok=True)
        served = sorted(set(o.versions or ModelRepository(o.repo).versions(o.model)))
        missing = [v for v in (o.stable, o.canary) if v is not None and v not in served]
        if missing:
            raise UsageError(
                f"{o.model} version {missing[0]} is not among the served versions "
                f"{', '.join(map(str, served)) or '(none)'} of {o.repo}"
            )
        weights = {str(o.stable): 100}
        if o.canary is not None:
            weights = {str(o.stable): 100 - o.canary_weight, str(o.canary): o.canary_weight}

        shutil.rmtree(run / "faults", ignore_errors=True)  # faults never outlive a run
        (run / "oncall.jsonl").unlink(missing_ok=True)  # nor do the last run's pages
        self.triton = TritonServer(o.repo, run / "triton", faults_dir=run / "faults")
        (run / "triton").mkdir(exist_ok=True)
        self._running.append(self.triton)
        endpoints = self.triton.start()
        self.triton.load(o.model, served)
        self._parts["triton"] = self.triton
        self.say(f"Triton ready: {o.model} versions {', '.join(map(str, served))}")

        gateway_token = token_file(run / "gateway.token")
        config = parse_config(
            {
                "models": {
                    o.model: {
                        "stable": str(o.stable),
                        "upstreams": {str(v): endpoints.http for v in served},
                        "weights": weights,
                    }
                },
                "shadow": {"repository": str(o.repo.resolve())},
            },
            "up",
        )
        self.gateway = GatewayServer(Gateway(config, gateway_token, say=self.say))
        self._running.append(self.gateway)
        self.gateway.start()
        self._parts["gateway"] = self.gateway

        controller_token_path = run / "controller.token"
        controller = AppServer(
            create_app(self.book, token_file(controller_token_path)), name="controller webhook"
        )
        self._running.append(controller)
        controller.start()
        self._parts["controller webhook"] = controller
        pager_token_path = run / "oncall.token"
        pager = AppServer(
            oncall.create_app(run / "oncall.jsonl", token_file(pager_token_path), sys.stdout),
            name="on-call receiver",
        )
        self._running.append(pager)
        pager.start()
        self._parts["on-call receiver"] = pager

        self.alertmanager = Alertmanager(run)
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

        rule_file = run / "rules.yml"
        rule_file.write_text(rules.render(profile))
        self.prometheus = Prometheus(run)
        self._running.append(self.prometheus)
        self.prometheus.start(
            prometheus_config(
                [
                    ScrapeTarget("triton", f"127.0.0.1:{endpoints.metrics_port}"),
                    ScrapeTarget("gateway", f"{self.gateway.host}:{self.gateway.port}"),
                ],
                [rule_file],
                f"127.0.0.1:{self.alertmanager.port}",
                SCRAPE_INTERVAL[o.profile],
                self.alertmanager.password_file,
            )
        )
        self._parts["prometheus"] = self.prometheus
        self.prometheus.wait_for_targets()

        self.urls = {
            "gateway": self.gateway.url,
            "gateway_admin_token_file": str(run / "gateway.token"),
            "triton_http": endpoints.http,
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
            "model": o.model,
            "profile": o.profile,
            "prometheus_window": profile.window,
        }
        self.supervisor = Supervisor(run, self.say)
        for name, part in self._parts.items():
            self.supervisor.watch(name, part)
        (run / "up.json").write_text(json.dumps(self.urls, indent=2) + "\n")
        return self.urls

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
        (self.options.run_dir / "up.json").unlink(missing_ok=True)


def describe(urls: dict[str, Any]) -> list[str]:
    return [f"  {name:<25} {value}" for name, value in urls.items()]
