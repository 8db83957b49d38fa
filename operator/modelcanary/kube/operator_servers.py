"""The HTTP servers beside the operator: the Alertmanager webhook receiver and `/metrics`
(prometheus_client's own ASGI app) with `/healthz`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from modelcanary.alerts.webhook import AlertBook, create_app
from modelcanary.asgi_server import AppServer

if TYPE_CHECKING:
    from modelcanary.kube.operator import OperatorConfig


def metrics_app(registry: CollectorRegistry) -> Starlette:
    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/healthz", healthz), Mount("/metrics", app=make_asgi_app(registry))]
    )


def start(config: OperatorConfig, book: AlertBook, registry: CollectorRegistry) -> list[Any]:
    """Start the webhook (when a token is configured) and the metrics server."""
    servers = []
    if config.webhook_token:
        servers.append(
            AppServer(
                create_app(book, config.webhook_token), host=config.bind,
                port=config.webhook_port, name="Alertmanager webhook receiver",
            )
        )  # fmt: skip
    servers.append(
        AppServer(
            metrics_app(registry), host=config.bind, port=config.metrics_port,
            name="operator metrics",
        )
    )  # fmt: skip
    for server in servers:
        server.start()
    return servers
