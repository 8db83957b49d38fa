"""Issue 25 probe 4: connections that never finish their headers starved every server of
`up` (no header timeout, no connection limit, the process' file limit exhausted). These
tests run the real server (AppServer: uvicorn with modelcanary.http_guard) with the
controller's webhook app, and lower its limits by configuration to show the mechanism
with hundreds of connections; benchmarks/bench_half_open.py measures 20,000."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from modelcanary.alerts.webhook import AlertBook, create_app
from modelcanary.asgi_server import AppServer
from modelcanary.http_guard import Limits

TOKEN = "s3cret"
PARTIAL_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # never the blank line that ends them


@pytest.fixture
def serve() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def start(stack: ExitStack, limits: Limits) -> AppServer:
    server = AppServer(create_app(AlertBook(), TOKEN), name="webhook", limits=limits)
    server.start()
    stack.callback(server.stop)
    return server


def half_open(stack: ExitStack, server: AppServer, data: bytes = PARTIAL_HEADERS) -> socket.socket:
    sock = socket.create_connection((server.host, server.port))
    stack.callback(sock.close)
    sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_half_open_connections_never_starve_new_ones(serve: ExitStack) -> None:
    limit = 40
    server = start(serve, Limits(max_connections=limit, header_timeout_s=600))
    attackers = [half_open(serve, server) for _ in range(10 * limit)]
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        answers = [client.get(f"{server.url}/healthz").status_code for _ in range(3 * limit)]
    assert answers == [200] * (3 * limit)  # a new connection each, all served
    assert len(server.guard.open) <= limit
    # the oldest half-open connections were closed to make room
    assert read_until_closed(attackers[0]) == b""
    assert server.guard.displaced >= len(attackers) - limit


@pytest.mark.parametrize("data", [b"", PARTIAL_HEADERS], ids=["silent", "partial-headers"])
def test_a_connection_that_never_finishes_its_headers_is_closed(
    serve: ExitStack, data: bytes
) -> None:
    server = start(serve, Limits(header_timeout_s=0.3))
    answer = read_until_closed(half_open(serve, server, data))
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"request headers not received in time\n")
    assert server.guard.open == set() or all(c.transport.is_closing() for c in server.guard.open)


def test_a_body_that_never_arrives_gets_408(serve: ExitStack) -> None:
    server = start(serve, Limits(body_timeout_s=0.3))
    request = (
        b"POST /alertmanager/webhook HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"version": '
    )
    answer = read_until_closed(half_open(serve, server, request))
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"request body not received in time\n")
    # the server still serves
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_headers_over_the_limit_are_refused(serve: ExitStack) -> None:
    server = start(serve, Limits(max_header_bytes=1024))
    flood = PARTIAL_HEADERS + b"X-Filler: " + b"a" * 4096 + b"\r\n\r\n"
    answer = read_until_closed(half_open(serve, server, flood))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_an_idle_keep_alive_connection_makes_room_for_a_new_one(serve: ExitStack) -> None:
    server = start(serve, Limits(max_connections=1, header_timeout_s=600))
    idle = half_open(serve, server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.settimeout(20)
    assert idle.recv(4096).startswith(b"HTTP/1.1 200 ")  # answered, then kept alive
    for _ in range(3):
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert read_until_closed(idle) == b""
