"""Hostile-client limits for every HTTP server the project runs (see asgi_server).

uvicorn bounds neither the time a client may take to send its request headers or body
nor the number of connections it holds open, so a few thousand connections that never
finish their headers exhaust the process' file limit and every new connection is reset.
`guarded_protocol` wraps uvicorn's httptools protocol with:

- a header timeout: a connection that has not sent a request's complete headers within
  `header_timeout_s` of connecting (or of its first byte after a keep-alive pause) gets
  408 and is closed;
- a body timeout: a request body not received within `body_timeout_s` of its headers
  gets 408 and is closed (time the server itself is not reading does not count);
- a header size limit (`max_header_bytes`): more gets 400 and is closed;
- a connection limit below the process' file limit: at the limit, a new connection
  closes the oldest connection that is waiting for request headers (a half-open one or
  an idle keep-alive one), so connections that never finish their headers cannot crowd
  out new ones; only when every connection is busy with a request is the new one closed.
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SERVERS_PER_PROCESS = 8  # each server may hold 1/8 of the file limit (`up` runs 3 + clients)


def raise_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (once is enough); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one server allows a client; `max_connections` None: a share of the file limit."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 64 * 1024
    max_connections: int | None = None
    keep_alive_s: int = 30

    def connections(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        return max(16, raise_file_limit() // SERVERS_PER_PROCESS)


DEFAULT_LIMITS = Limits()


class ConnectionGuard:
    """One server's open connections, and which of them wait for request headers (oldest
    first): the ones a new connection may displace."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.limit = limits.connections()
        self.open: set[GuardedProtocol] = set()
        self.waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.displaced = 0  # connections closed to make room for newer ones

    def admit(self, connection: GuardedProtocol) -> None:
        self.open.add(connection)
        self.wait(connection)
        if len(self.open) <= self.limit:
            return
        oldest = next(iter(self.waiting))
        self.forget(oldest)  # counted out now; its transport closes asynchronously
        self.displaced += 1
        oldest.transport.close()

    def wait(self, connection: GuardedProtocol) -> None:
        """The connection waits for a request's headers (at the end of the line)."""
        self.waiting.pop(connection, None)
        self.waiting[connection] = None

    def busy(self, connection: GuardedProtocol) -> None:
        self.waiting.pop(connection, None)

    def forget(self, connection: GuardedProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the timeouts and limits of a `ConnectionGuard`."""

    guard: ConnectionGuard  # set per server by `guarded_protocol`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        super().connection_made(transport)
        self.guard.admit(self)
        self._header_timer = self._after(self.guard.limits.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        self._cancel_timers()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:  # the first byte after a keep-alive pause
            self._header_timer = self._after(self.guard.limits.header_timeout_s, self._headers_late)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.guard.busy(self)
        super().on_headers_complete()
        self._body_timer = self._after(self.guard.limits.body_timeout_s, self._body_late)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle until the next request
            self.guard.wait(self)

    def _count(self, size: int) -> None:
        """Raising inside a parser callback makes uvicorn answer 400 and close."""
        self._header_bytes += size
        if self._header_bytes > self.guard.limits.max_header_bytes:
            raise ValueError("request headers over the limit")

    def _after(self, delay: float, callback: Any) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        self._time_out("request headers")

    def _body_late(self) -> None:
        if self.flow.read_paused:  # the app is not reading: not the client's delay
            self._body_timer = self._after(self.guard.limits.body_timeout_s, self._body_late)
            return
        self._body_timer = None
        self._time_out("request body")

    def _time_out(self, what: str) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() ends, its late response is dropped
            cycle.message_event.set()
        if cycle is None or cycle.response_complete or not cycle.response_started:
            message = f"{what} not received in time\n".encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(message), message)
            )
        self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """A protocol class bound to one server's guard (uvicorn builds one per connection)."""
    return type("GuardedHttpProtocol", (GuardedProtocol,), {"guard": guard})
