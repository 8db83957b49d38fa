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

A version served by several replicas (modelcanary.gateway.replicas) has each replica
probed: one that is down or hung is skipped by its version's requests (and a hung one's
waiting requests abandoned) while the others serve; the version is unready only when all
its replicas are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from modelcanary.gateway.routes import READY_TIMEOUT_S, Route
from modelcanary.http.upstream import Upstream, UpstreamRefused, UpstreamTimeout

T = TypeVar("T")
Probed = Literal["ready", "unready", "hung"]  # hung: no answer within READY_TIMEOUT_S


class Abandoned(Exception):
    """The request waited on an upstream that a probe then found hung."""


class ReadinessWatch:
    """Probes every version of every route in the gateway's event loop."""

    def __init__(
        self,
        routes: dict[str, Route],
        upstream: Upstream,
        every_s: float,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.routes, self.upstream, self.every_s = routes, upstream, every_s
        self.say = say
        self.task: asyncio.Task[None] | None = None
        self.waiting: dict[tuple[str, str], set[asyncio.Task[Any]]] = {}  # by replica URL
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
            replicas = [(v, url) for v, r in route.replicas.items() for url in r.urls]
            found = await asyncio.gather(*(self._probe(route, v, url) for v, url in replicas))
            probed = dict(zip(replicas, found, strict=True))
            for version in route.replicas:
                down = {url for (v, url), f in probed.items() if v == version and f != "ready"}
                self._set_down(route, version, down)
            self.mark(route, {v for v, r in route.replicas.items() if r.all_down})
            for _, replica in (pair for pair, f in probed.items() if f == "hung"):
                for request in self.waiting.get((route.name, replica), ()):
                    if request not in self.abandoned:
                        self.abandoned.add(request)
                        request.cancel()

    async def send(
        self, route: Route, version: str, url: str, request: Callable[[str], Awaitable[T]]
    ) -> T:
        """Await `request(url)`, a request to a replica of the version; when that replica
        refuses it (it died) or a probe finds it hung meanwhile, `request` again on each
        other replica of the version that is not down, until one answers: while one
        replica serves, another's death costs the version and its clients no request.
        Raises the last replica's UpstreamRefused, or Abandoned."""
        replicas = route.replicas[version]
        first = replicas.of(url)
        path = url[len(first) :] if first is not None else ""
        others = [base + path for base in replicas.urls if first is not None and base != first]
        try:
            return await self._send(route, version, url, request(url))
        except (UpstreamRefused, Abandoned) as exc:
            failure: UpstreamRefused | Abandoned = exc
            self.refused(route, version, url)
        for other in others:
            if replicas.of(other) in replicas.down:
                continue
            try:
                return await self._send(route, version, other, request(other))
            except (UpstreamRefused, Abandoned) as exc:
                failure = exc
                self.refused(route, version, other)
        raise failure

    async def _send(self, route: Route, version: str, url: str, request: Awaitable[T]) -> T:
        """Await one request to a replica; Abandoned when a probe finds that replica hung
        meanwhile (only while probes run)."""
        current = asyncio.current_task()
        if self.task is None or current is None:
            return await request
        # The request's own task is what a probe cancels (cheaper than a task per request);
        # it waits in this `await` whenever it is in `waiting`, so the cancellation lands here.
        replica = route.replicas[version].of(url) or url
        waiting = self.waiting.setdefault((route.name, replica), set())
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

    def refused(self, route: Route, version: str, url: str) -> None:
        """A replica refused a request to `url`: down until a probe finds it ready, and its
        version unready once all its replicas are (only while probes run, or nothing would
        bring it back)."""
        replicas = route.replicas[version]
        replica = replicas.of(url)
        if self.task is None or replica is None or replica in replicas.down:
            return
        self._set_down(route, version, {*replicas.down, replica})
        if replicas.all_down and version not in route.unready:
            self.mark(route, {*route.unready, version})

    def _set_down(self, route: Route, version: str, down: set[str]) -> None:
        """Set the version's down replicas; say what changed (when it has several)."""
        replicas = route.replicas[version]
        lost, back = replicas.set_down(down)
        if (lost or back) and len(replicas.urls) > 1 and self.say is not None:
            change = "; ".join(
                [f"replica {url} not ready" for url in lost]
                + [f"replica {url} ready again" for url in back]
            )
            ready = len(replicas.urls) - len(replicas.down)
            self.say(
                f"gateway: {route.name} version {version} {change}; "
                f"{ready} of {len(replicas.urls)} replicas ready"
            )

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

    async def _probe(self, route: Route, version: str, replica: str) -> Probed:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                response = await self.upstream.request(
                    "GET", route.version_url(version, "/ready", replica), None, {}
                )
        except UpstreamRefused:
            return "unready"
        except (UpstreamTimeout, TimeoutError):
            return "hung"
        return "ready" if response.status == 200 else "unready"
