"""The gateway's admin API, behind a bearer token.

    GET /admin/models                    every route
    GET /admin/models/{m}/weights        one route
    PUT /admin/models/{m}/weights        {"weights": {"1": 90, "2": 10}, "stable": "1"}
    GET /admin/shadow                    every comparison the comparator runs
    GET, PUT, DELETE /admin/shadow/{m}   {"canary": "2", "percent": 10, "stable": "1",
                                          "atol": 0.001, "rtol": 0.01}

`stable` is optional: the version a promotion made stable (weights), the version whose
requests are mirrored (shadow; default the route's stable). `atol` and `rtol` (optional):
the tolerance of numeric outputs (modelcanary.shadow.pairs). Any other field is refused
(400, naming it), as is a body over 64 KiB (413). A split that gives a version other
than stable more traffic is applied only if that version answers ready within a second;
one that only moves traffic back to stable (a rollback) is applied at once, whatever the
upstreams do. A comparison (modelcanary.shadow.live_comparison)
mirrors `percent` of the requests the stable version answers to the canary; DELETE ends it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelcanary.errors import UsageError
from modelcanary.gateway.metrics import GatewayMetrics
from modelcanary.gateway.routes import Route, unknown_model, unready
from modelcanary.gateway.weights import WeightTable
from modelcanary.http.asgi import (
    Receive,
    Scope,
    Send,
    read_model,
    request_headers,
    respond_error,
    respond_json,
)
from modelcanary.http.upstream import Upstream
from modelcanary.shadow.admin import (  # the admin routes shared with shadow/service.py
    MAX_ADMIN_BODY,
    NEEDS_TOKEN,
    ToleranceFields,
    authorized,
    list_comparisons,
    one_comparison,
)
from modelcanary.shadow.live_comparison import Comparator

WEIGHTS_EXAMPLE = '{"weights": {"1": 90, "2": 10}, "stable": "1"}'
SHADOW_EXAMPLE = '{"canary": "2", "percent": 10}'


class WeightUpdate(BaseModel):
    """The body of PUT /admin/models/{m}/weights."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, Any]  # WeightTable.parse judges each percent and their sum
    stable: str | None = None


class ShadowUpdate(ToleranceFields):
    """The body of PUT /admin/shadow/{m}."""

    canary: str
    percent: float = Field(ge=0, le=100)
    stable: str | None = None


class AdminApi:
    """Reads and replaces the routes' splits; the routes are the gateway's own objects."""

    def __init__(
        self,
        token: str,
        routes: dict[str, Route],
        metrics: GatewayMetrics,
        upstream: Upstream,
        comparator: Comparator,
    ) -> None:
        self.token = token.encode()
        self.routes = routes
        self.metrics = metrics
        self.upstream = upstream
        self.comparator = comparator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, parts = scope["method"], scope["path"].strip("/").split("/")
        headers = request_headers(scope)
        if not authorized(headers, self.token):
            await respond_error(send, 401, NEEDS_TOKEN, [(b"www-authenticate", b"Bearer")])
            return
        if method == "GET" and parts == ["admin", "models"]:
            views = {name: route.view() for name, route in self.routes.items()}
            await respond_json(send, 200, {"models": views})
            return
        if parts[:2] == ["admin", "shadow"]:
            await self._shadow(scope, parts[2:], headers, receive, send)
            return
        if len(parts) != 4 or parts[1] != "models" or parts[3] != "weights":
            await respond_error(send, 404, f"no admin route for {method} {scope['path']}")
            return
        route = self.routes.get(parts[2])
        if route is None:
            await respond_error(send, 404, unknown_model(self.routes, parts[2]))
            return
        if method == "GET":
            await respond_json(send, 200, route.view())
        elif method == "PUT":
            await self._set_weights(route, headers, receive, send)
        else:
            await respond_error(
                send, 405, f"{method} is not allowed on {scope['path']}; use GET or PUT"
            )

    async def _set_weights(
        self, route: Route, headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        update = await read_model(
            WeightUpdate, WEIGHTS_EXAMPLE, headers, receive, send, MAX_ADMIN_BODY
        )
        if update is None:
            return
        stable = route.config.stable if update.stable is None else update.stable
        if stable not in route.config.upstreams:
            versions = ", ".join(route.config.upstreams)
            await respond_error(
                send, 400, f"stable version {stable!r} is not served (versions: {versions})"
            )
            return
        try:
            table = WeightTable.parse(update.weights, route.config.upstreams)
        except UsageError as exc:
            await respond_error(send, 400, str(exc))
            return
        gaining = {  # a split that only moves traffic to stable (a rollback) never waits
            v for v, w in table.weights if w > route.table.percent(v) and v != route.config.stable
        }
        problems = await unready(self.upstream, route, table, gaining) if gaining else []
        if problems:
            await respond_error(send, 400, "; ".join(problems) + "; weights unchanged")
            return
        if stable != route.config.stable:
            route.config = route.config.model_copy(update={"stable": stable})
        route.table = table  # one assignment: each request sees the old table or the new one
        self.metrics.set_weights(route.name, route.config, table)
        await respond_json(send, 200, route.view())

    async def _shadow(
        self, scope: Scope, rest: list[str], headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        method = scope["method"]
        if method == "GET" and not rest:
            await list_comparisons(self.comparator, send)
            return
        if len(rest) != 1:
            await respond_error(send, 404, f"no admin route for {method} {scope['path']}")
            return
        route = self.routes.get(rest[0])
        if route is None:
            await respond_error(send, 404, unknown_model(self.routes, rest[0]))
            return
        await one_comparison(
            self.comparator,
            route.name,
            method,
            scope["path"],
            send,
            lambda: self._set_shadow(route, headers, receive, send),
        )

    async def _set_shadow(
        self, route: Route, headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        update = await read_model(
            ShadowUpdate, SHADOW_EXAMPLE, headers, receive, send, MAX_ADMIN_BODY
        )
        if update is None:
            return
        stable = update.stable or route.config.stable
        versions = ", ".join(route.config.upstreams)
        for role, version in (("stable", stable), ("canary", update.canary)):
            if version not in route.config.upstreams:
                await respond_error(
                    send, 400, f"{role} version {version!r} is not served (versions: {versions})"
                )
                return
        if stable == update.canary:
            await respond_error(send, 400, f"canary {stable!r} is the stable version itself")
            return
        try:
            target = self.comparator.configure(
                route.name,
                stable,
                update.canary,
                update.percent,
                route.version_url(update.canary, "/infer"),
                atol=update.atol,
                rtol=update.rtol,
            )
        except UsageError as exc:
            await respond_error(send, 400, str(exc))
            return
        await respond_json(send, 200, target.view())
