"""The gateway's HTTP client for upstream Triton servers: pooled keep-alive connections,
one timeout, and the two failures the gateway reports distinctly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp


class UpstreamRefused(Exception):
    """The upstream refused or dropped the connection: nothing is listening, or it died."""


class UpstreamTimeout(Exception):
    """The upstream did not answer within the timeout."""


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


# Headers of the Open Inference Protocol that must cross the proxy unchanged, both ways:
# the binary tensor extension puts the JSON header's length in Inference-Header-Content-Length.
PASSED_HEADERS = ("content-type", "inference-header-content-length", "content-encoding")


class Upstream:
    """A pool of connections to every upstream, created inside the running event loop."""

    def __init__(self, timeout_s: float, connections: int = 64) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.connections = connections
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=self.timeout, auto_decompress=False
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> UpstreamResponse:
        if self.session is None:
            raise RuntimeError("Upstream.open() was not awaited")
        try:
            async with self.session.request(method, url, data=body, headers=headers) as response:
                payload = await response.read()
                passed = [
                    (name.encode(), response.headers[name].encode())
                    for name in PASSED_HEADERS
                    if name in response.headers
                ]
                return UpstreamResponse(response.status, passed, payload)
        except TimeoutError as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise UpstreamRefused(str(exc) or type(exc).__name__) from exc
