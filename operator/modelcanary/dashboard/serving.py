"""Serving the dashboard from a command: its `--listen` address (loopback only: the page
can act on rollouts) and the foreground server that prints its URL."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable

from modelcanary.asgi_server import AppServer
from modelcanary.dashboard.app import Backend, create_app
from modelcanary.durations import parse_duration

DEFAULT_LISTEN = "127.0.0.1:3100"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def listen_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` on a loopback address (port 0: any free port)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if host not in LOOPBACK:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the dashboard listens on a loopback address only (127.0.0.1:PORT)"
        )
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number up to 65535")
    return host, int(port)


def window_text(text: str) -> str:
    """A PromQL range like `1m` or `30s` (`--window`)."""
    try:
        if parse_duration(text) <= 0:
            raise ValueError(f"{text!r} is not a positive duration")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def serve(
    backend: Backend, listen: tuple[str, int], token: str | None, say: Callable[[str], None]
) -> int:
    """Serve in the foreground until Ctrl-C; print the URL first (with the token in its
    fragment when actions are allowed)."""
    server = AppServer(create_app(backend, token), *listen, name="dashboard")
    url = f"http://{'[::1]' if server.host == '::1' else server.host}:{server.port}/"
    say(f"dashboard of {backend.describe()}: {url}")
    if token is not None:
        say(f"actions allowed: open {url}#token={token}")
    else:
        say("read-only (--allow-actions lets the page promote, pause, resume and roll back)")
    server.run()
    return 0


def session_token() -> str:
    """A token for one dashboard run, where there is no stack token (a cluster)."""
    return secrets.token_urlsafe(24)
