"""Run an ASGI app on uvicorn (uvloop, httptools) on a socket bound beforehand, so that
port 0 picks a free port and the caller learns which: in the foreground for a command,
or in a background thread for tests and for `modelcanary up`."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn
import uvloop

from modelcanary.errors import UsageError
from modelcanary.waiting import wait_until


class AppServer:
    """One ASGI app listening on one address."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, name: str = "app") -> None:
        self.name = name
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise UsageError(f"the {name} cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host, self.port = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            app,
            http="httptools",
            lifespan="auto",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,  # then long polls are cancelled
            proxy_headers=False,  # a middleware per request; no proxy headers are read
            server_header=False,
            date_header=False,
        )
        self.server = uvicorn.Server(config)
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

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
            self.thread = None
        self.socket.close()
