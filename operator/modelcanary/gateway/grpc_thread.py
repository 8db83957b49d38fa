"""A KServe v2 gRPC service on one address, in a thread with its own event loop (grpc.aio
is not tied to the HTTP server's uvloop): the gateway's (modelcanary.gateway.grpc_server)
and the request guard's (modelcanary.gateway.guard_grpc)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import grpc
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelcanary.errors import UsageError, one_line


def bind(
    service: Any, host: str, port: int, max_message: int
) -> tuple[grpc.aio.Server, int, str | None]:
    """A server of the service on host:port (port 0: a free one), not yet started, in the
    running event loop: it, the port bound, and why it cannot listen (None if it can)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a port still held is an error, not shared
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        return server, port, str(exc) or "the port is taken"
    return server, bound or port, None if bound else "the port is taken"


class GrpcThread:
    """Serves the service `make_service` makes (in the thread's loop) on host:port; what
    is named `title` in errors. `exited` says why its thread ended."""

    title = "the gRPC server"

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.ready = threading.Event()
        self.error: str | None = None  # why it could not listen
        self.failure = ""  # what ended its thread, when something did

    def make_service(self) -> Any:
        """The servicer, made in the server's event loop."""
        raise NotImplementedError

    def max_message(self) -> int:
        """The largest request message accepted."""
        raise NotImplementedError

    async def close_service(self, service: Any) -> None:
        """Release what the servicer holds (its channels), once the server stopped."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        """Serve in a background thread; return host:port once it listens."""
        self.ready.clear()
        self.error, self.failure = None, ""
        self.thread = threading.Thread(target=self._run, name="grpc", daemon=True)
        self.thread.start()
        if not self.ready.wait(timeout) or self.error is not None:
            raise UsageError(
                f"{self.title} cannot listen on {self.address}: "
                f"{self.error or 'it did not start in time'}"
            )
        return self.address

    def exited(self) -> str | None:
        """Why the server no longer serves (None while it does, or before `start`)."""
        if self.thread is None or self.thread.is_alive():
            return None
        return f"its server thread ended{': ' + self.failure if self.failure else ''}"

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # any end is reported by `exited`
            self.failure = one_line(exc)

    async def _serve(self) -> None:
        service = self.make_service()
        server, self.port, self.error = bind(service, self.host, self.port, self.max_message())
        if self.error is not None:
            self.ready.set()
            return
        await server.start()
        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        self.ready.set()
        try:
            await self.stopping.wait()
        finally:  # also when the loop dies under it: the port is free for a restart
            await server.stop(1)
            await self.close_service(service)

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop is not None and self.stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed (a crash)
                self.loop.call_soon_threadsafe(self.stopping.set)
        if self.thread is not None:
            self.thread.join(timeout)
            self.thread = None
        self.loop = self.stopping = None
