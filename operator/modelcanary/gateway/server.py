"""Run the gateway: an `AppServer` named for it (see modelcanary.asgi_server)."""

from __future__ import annotations

from modelcanary.asgi_server import AppServer
from modelcanary.gateway.app import Gateway


class GatewayServer(AppServer):
    """The gateway listening on one address."""

    def __init__(self, app: Gateway, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, host, port, name="gateway")
        self.app = app
