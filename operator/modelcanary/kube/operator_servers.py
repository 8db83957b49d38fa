"""The HTTP servers beside the operator: the Alertmanager webhook receiver and `/metrics`
(prometheus_client's own ASGI app) with the probes (see modelcanary.kube.health):

    GET /livez    200 while the tick loop goes round, else 503 saying why
    GET /readyz   200 while this replica holds the Lease (or runs without election)
    GET /healthz  200 while the server answers (the process is up)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from modelcanary.alerts.webhook import AlertBook, create_app
from modelcanary.asgi_server import AppServer, starlette_app

if TYPE_CHECKING:
    from modelcanary.kube.operator import OperatorConfig


Problem = Callable[[], str | None]  # why a probe fails; None: it passes


def metrics_app(
    registry: CollectorRegistry, live: Problem = lambda: None, ready: Problem = lambda: None
) -> Starlette:
    def probe(problem: Problem) -> Callable[[Request], Any]:
        async def answer(request: Request) -> PlainTextResponse:
            found = problem()
            if found is None:
                return PlainTextResponse("ok")
            return PlainTextResponse(found, 503)

        return answer

    return starlette_app(
        [
            Route("/healthz", probe(lambda: None)),
            Route("/livez", probe(live)),
            Route("/readyz", probe(ready)),
            Mount("/metrics", app=make_asgi_app(registry)),
        ]
    )


def start(
    config: OperatorConfig,
    book: AlertBook,
    registry: CollectorRegistry,
    live: Problem = lambda: None,
    ready: Problem = lambda: None,
) -> list[Any]:
    """Start the webhook (when a token is configured) and the metrics server."""
    servers = []
    if config.webhook_token:
        servers.append(
            AppServer(
                create_app(book, config.webhook_token),
                host=config.bind,
                port=config.webhook_port,
                name="Alertmanager webhook receiver",
            )
        )
    servers.append(
        AppServer(
            metrics_app(registry, live, ready),
            host=config.bind,
            port=config.metrics_port,
            name="operator metrics",
        )
    )
    for server in servers:
        server.start()
    return servers
