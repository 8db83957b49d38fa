"""Run an ASGI app on uvicorn (uvloop, httptools) on a socket bound beforehand, so that
port 0 picks a free port and the caller learns which: in the foreground for a command,
or in a background thread for tests and for `modelcanary up`, whose supervisor restarts a
server whose thread ended on the same port (`exited`, `restart`). Every server has the
header and body timeouts and the connection limit of modelcanary.http_guard.

The project's servers are Starlette apps built by `starlette_app` (a route table, one-line
JSON errors), except the two on the inference data path, the gateway and the comparator
service: raw ASGI callables (modelcanary.http.asgi), because Starlette's request and
response objects cost them CPU on every request (docs/architecture.md, "One HTTP style")."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from modelcanary.errors import UsageError
from modelcanary.http_guard import DEFAULT_LIMITS, ConnectionGuard, Limits, guarded_protocol
from modelcanary.waiting import wait_until


def starlette_app(routes: Sequence[BaseRoute], middleware: Sequence[Middleware] = ()) -> Starlette:
    """A Starlette app whose own refusals (no such route, a method the route does not
    take) are one-line JSON errors like every other answer of the project's servers."""
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: _refusal}
    )


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, request.url.path
    error = exc.detail
    if exc.status_code == 404:
        error = f"no route for {method} {path}"
    elif exc.status_code == 405:
        allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "")
        error = f"{path} does not take {method}, only {allowed}"
    return JSONResponse({"error": error}, exc.status_code, headers=exc.headers)


class AppServer:
    """One ASGI app listening on one address."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "app",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.socket = _bind(host, port, name)
        self.host, self.port = self.socket.getsockname()[:2]
        self.guard = ConnectionGuard(limits)
        self.config = uvicorn.Config(
            app,
            http=guarded_protocol(self.guard),
            lifespan="auto",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=limits.keep_alive_s,
            timeout_graceful_shutdown=1,  # then long polls are cancelled
            proxy_headers=False,  # a middleware per request; no proxy headers are read
            server_header=False,
            date_header=False,
        )
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM (uvicorn handles both)."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self.server.serve(sockets=[self.socket]))

    def start(self, timeout: float = 10.0) -> str:
        """Serve in a background thread; return the URL once it accepts requests."""
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self.thread.start()
        thread = self.thread
        wait_until(lambda: self.server.started or not thread.is_alive(), timeout, every=0.01)
        if not self.server.started:
            raise UsageError(f"the {self.name} did not start on {self.url}")
        return self.url

    @property
    def pid(self) -> int:
        return os.getpid()

    def exited(self) -> str | None:
        """Why the server no longer serves (None while it does, or before `start`)."""
        if self.thread is not None and not self.thread.is_alive():
            return "its server thread ended"
        return None

    def restart(self, timeout: float = 10.0) -> str:
        """Serve again on the same address after the thread ended; the app is the same
        object, so its state (a gateway's weights) carries over."""
        self.stop(timeout)
        self.socket = _bind(self.host, self.port, self.name)
        self.server = uvicorn.Server(self.config)
        return self.start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
            self.thread = None
        self.socket.close()


def _bind(host: str, port: int, name: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"the {name} cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock
