"""Per-version readiness of the upstreams, which the routes' serving splits follow.

Every `readiness_interval_s` the gateway asks each version's upstream
`GET /v2/models/{m}/versions/{v}/ready`, all at once; a version that does not answer 200
within a second is unready, and its route serves the other ready versions with traffic
in its place (see modelcanary.gateway.routes) until it answers 200 again. A refused
inference request marks its version unready at once (see modelcanary.gateway.app), so a
crashed upstream costs at most one probe interval's worth of requests to it. A request
that would still go to an unready version (no ready version has traffic, or it is pinned
to it) is answered 503 at once instead of being sent, and a probe that gets no answer in
time (a hung upstream: a stopped Triton accepts connections and answers nothing) abandons
the requests waiting on that version (503 too): a hung upstream costs a client about a
probe interval and a probe timeout, not the upstream timeout (30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from modelcanary.gateway.routes import READY_TIMEOUT_S, Route
from modelcanary.gateway.upstream import Upstream, UpstreamRefused, UpstreamTimeout

T = TypeVar("T")
Probed = Literal["ready", "unready", "hung"]  # hung: no answer within READY_TIMEOUT_S


class Abandoned(Exception):
    """The request waited on an upstream that a probe then found hung."""


class ReadinessWatch:
    """Probes every version of every route in the gateway's event loop."""

    def __init__(
        self, routes: dict[str, Route], upstream: Upstream, every_s: float,
        say: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.routes, self.upstream, self.every_s = routes, upstream, every_s
        self.say = say
        self.task: asyncio.Task[None] | None = None
        self.waiting: dict[tuple[str, str], set[asyncio.Task[Any]]] = {}
        self.abandoned: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if self.every_s > 0:
            self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def check(self) -> None:
        """Probe once and update each route."""
        for route in self.routes.values():
            versions = list(route.config.upstreams)
            probed = dict(
                zip(
                    versions,
                    await asyncio.gather(*(self._probe(route, v) for v in versions)),
                    strict=True,
                )
            )
            self.mark(route, {v for v, found in probed.items() if found != "ready"})
            for version in (v for v, found in probed.items() if found == "hung"):
                for request in self.waiting.get((route.name, version), ()):
                    if request not in self.abandoned:
                        self.abandoned.add(request)
                        request.cancel()

    async def send(self, route: Route, version: str, request: Coroutine[Any, Any, T]) -> T:
        """Await a request to the version's upstream; Abandoned when a probe finds that
        upstream hung meanwhile (only while probes run)."""
        current = asyncio.current_task()
        if self.task is None or current is None:
            return await request
        # The request's own task is what a probe cancels (cheaper than a task per request);
        # it waits in this `await` whenever it is in `waiting`, so the cancellation lands here.
        waiting = self.waiting.setdefault((route.name, version), set())
        waiting.add(current)
        try:
            return await request
        except asyncio.CancelledError:
            if current not in self.abandoned or current.uncancel() > 0:
                raise  # (also) cancelled by someone else: the server is stopping
            raise Abandoned(
                f"version {version} of {route.name} stopped answering its readiness probe "
                "while this request waited for it"
            ) from None
        finally:
            waiting.discard(current)
            self.abandoned.discard(current)

    def is_unready(self, route: Route, version: str) -> str | None:
        """Why a request to the version is answered 503 without being sent (None: send it)."""
        if version not in route.unready:
            return None
        return f"version {version} of {route.name} is not ready (its last readiness probe failed)"

    def refused(self, route: Route, version: str) -> None:
        """An upstream refused a request: unready until a probe finds it ready (only while
        probes run, or nothing would bring it back)."""
        if self.task is not None and version not in route.unready:
            self.mark(route, {*route.unready, version})

    def mark(self, route: Route, unready: set[str]) -> None:
        """Set the route's unready versions; say what changed."""
        before = route.unready
        if route.set_unready(unready) and self.say is not None:
            lost, back = sorted(unready - before), sorted(before - unready)
            change = "; ".join(
                [f"version {v} not ready" for v in lost]
                + [f"version {v} ready again" for v in back]
            )
            self.say(f"gateway: {route.name} {change}; serving {route.serving.describe()}")

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.every_s)

    async def _probe(self, route: Route, version: str) -> Probed:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                response = await self.upstream.request(
                    "GET", route.version_url(version, "/ready"), None, {}
                )
        except UpstreamRefused:
            return "unready"
        except (UpstreamTimeout, TimeoutError):
            return "hung"
        return "ready" if response.status == 200 else "unready"
