"""A real Prometheus fed by an exporter the test drives, as Triton's metrics endpoint
would be: per-version successes, failures and latency, with the demo profile's recording
and alert rules (1 s scrape and evaluation, 15 s windows).

Shared by the operator tests, the HA test and the scale benchmark. The series are the
`triton` source's (the operator command, a process as in a pod, offers only the cluster
sources), and counters are computed from the clock when scraped rather than incremented by
a thread, so that 200 models cost a scrape a few milliseconds, well inside the 1 s scrape
timeout, even while the test process is busy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelcanary import metrics_contract
from modelcanary.alerts import rules
from modelcanary.alerts.profile import load_profile
from modelcanary.asgi_server import AppServer
from modelcanary.local.monitoring import Prometheus, ScrapeTarget, prometheus_config

SOURCE = "triton"  # the operator's --source for these series
WINDOW = load_profile("demo").window  # the rate window of the rules: the operator's --window
RATE = 20.0  # requests per second per version
LATENCY_S = 0.004  # every request's latency


@dataclass
class Series:
    """One version's counts: those up to `since`, then RATE per second at `error_ratio`."""

    since: float
    error_ratio: float = 0.0
    success: float = 0.0
    failure: float = 0.0

    def counts(self, now: float) -> tuple[float, float]:
        served = RATE * (now - self.since)
        return (
            self.success + served * (1 - self.error_ratio),
            self.failure + served * self.error_ratio,
        )

    def set_error_ratio(self, ratio: float, now: float) -> None:
        self.success, self.failure = self.counts(now)
        self.since, self.error_ratio = now, ratio


@dataclass
class Traffic:
    """Requests per second per (model, version), and the share that fails."""

    series: dict[tuple[str, str], Series] = field(default_factory=dict)

    def serve(self, model: str, canary_errors: float = 0.0) -> None:
        """Versions 1 and 2 of MODEL get traffic from now on; 2 fails this share."""
        now = time.time()
        for version in ("1", "2"):
            self.series.setdefault((model, version), Series(now))
        self.series[(model, "2")].set_error_ratio(canary_errors, now)

    def clear(self) -> None:
        """No traffic for any model any more, and no series for them (stale in Prometheus)."""
        self.series.clear()

    def exposition(self) -> str:
        """Triton's counters (no _total suffix) and the backend's latency histogram."""
        now, lines = time.time(), []
        buckets = [*metrics_contract.LATENCY_BUCKETS, float("inf")]
        latency = metrics_contract.BACKEND_LATENCY
        for (model, version), series in list(self.series.items()):
            labels = f'model="{model}",version="{version}"'
            success, failure = series.counts(now)
            total = success + failure
            lines.append(f"nv_inference_request_success{{{labels}}} {success:.1f}")
            lines.append(f"nv_inference_request_failure{{{labels}}} {failure:.1f}")
            for bound in buckets:
                le = "+Inf" if bound == float("inf") else repr(bound)
                count = total if bound >= LATENCY_S else 0.0
                lines.append(f'{latency}_bucket{{{labels},le="{le}"}} {count:.1f}')
            lines.append(f"{latency}_count{{{labels}}} {total:.1f}")
            lines.append(f"{latency}_sum{{{labels}}} {total * LATENCY_S:.4f}")
        return "\n".join(lines) + "\n"


def exporter_app(traffic: Traffic) -> Starlette:
    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(traffic.exposition(), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/metrics", metrics)])


@contextmanager
def demo_prometheus(run: Path, target: ScrapeTarget) -> Iterator[Prometheus]:
    """Prometheus scraping TARGET every second with the demo profile's rules, once it has
    scraped it; stopped on exit."""
    rule_file = run / "rules.yml"
    rule_file.write_text(rules.render(load_profile("demo")))
    server = Prometheus(run)
    try:
        # no Alertmanager (127.0.0.1:9): the rules are what matters
        server.start(prometheus_config([target], [rule_file], "127.0.0.1:9", "1s"))
        server.wait_for_targets()
        yield server
    finally:
        server.stop()


@contextmanager
def traffic_prometheus(run: Path) -> Iterator[tuple[Prometheus, Traffic]]:
    """Prometheus scraping the exporter every second, with the demo rules; both stopped
    on exit."""
    traffic = Traffic()
    exporter = AppServer(exporter_app(traffic), name="test exporter")
    exporter.start()
    try:
        target = ScrapeTarget(SOURCE, f"{exporter.host}:{exporter.port}")
        with demo_prometheus(run, target) as server:
            yield server, traffic
    finally:
        exporter.stop()
