"""The gateway as a plain ASGI application.

Open Inference Protocol (KServe v2) paths the clients use:

    POST /v2/models/{m}/infer                  weighted choice of a version
    POST /v2/models/{m}/versions/{v}/infer     that version (as does header x-modelcanary-version)
    GET  /v2/models/{m}[/versions/{v}][/ready] metadata and readiness, from the upstream
    GET  /v2/health/live, /v2/health/ready, /v2
    GET  /metrics                              per-version requests, latency, weights

Admin API (bearer token): GET /admin/models, GET|PUT /admin/models/{m}/weights (PUT takes
`{"weights": {...}}` and optionally `"stable"`, the version a promotion made stable).

It is a plain ASGI callable rather than a framework app because every request on the hot
path pays for what the framework does; the routes are few and fixed.
"""

from __future__ import annotations

import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelcanary import __version__, metrics_contract
from modelcanary.errors import UsageError
from modelcanary.gateway.config import GatewayConfig, ModelRoute
from modelcanary.gateway.upstream import (
    PASSED_HEADERS,
    Upstream,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamTimeout,
)
from modelcanary.gateway.weights import WeightTable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = [(b"content-type", b"application/json")]
NEEDS_TOKEN = "the admin API needs 'Authorization: Bearer <token>'"


class BodyTooLarge(Exception):
    pass


@dataclass
class Route:
    """One model: its versions' upstreams and the current split (replaced whole)."""

    name: str
    config: ModelRoute
    table: WeightTable


class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            metrics_contract.GATEWAY_REQUESTS,
            "Requests through the gateway by model, serving version and response code",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            metrics_contract.GATEWAY_LATENCY,
            "Time from request to response through the gateway, by model and version",
            ["model", "version"],
            buckets=metrics_contract.LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.weight = Gauge(
            metrics_contract.GATEWAY_WEIGHT,
            "Percent of the model's traffic routed to the version",
            ["model", "version"],
            registry=self.registry,
        )
        self.role = Gauge(
            metrics_contract.GATEWAY_ROLE,
            "1 for each version with its role: stable, or canary for every other version",
            ["model", "version", "role"],
            registry=self.registry,
        )
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    def observe(self, model: str, version: str, code: int, seconds: float) -> None:
        counter = self._requests.get((model, version, code))
        if counter is None:
            counter = self._requests[(model, version, code)] = self.requests.labels(
                model, version, str(code)
            )
        histogram = self._latency.get((model, version))
        if histogram is None:
            histogram = self._latency[(model, version)] = self.latency.labels(model, version)
        counter.inc()
        histogram.observe(seconds)

    def set_weights(self, model: str, route: ModelRoute, table: WeightTable) -> None:
        for version in route.upstreams:
            self.weight.labels(model, version).set(table.percent(version))
            role = "stable" if version == route.stable else "canary"
            metrics_contract.set_role(self.role, (model, version), role)


class Gateway:
    """The ASGI application. `draw` returns a uniform number in [0, 1) per request."""

    def __init__(
        self,
        config: GatewayConfig,
        admin_token: str,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if not admin_token:
            raise UsageError("the gateway needs an admin token")
        self.config = config
        self.admin_token = admin_token.encode()
        self.draw = draw
        self.metrics = Metrics()
        self.upstream = Upstream(config.upstream_timeout_s)
        self.routes: dict[str, Route] = {}
        for name, route in config.models.items():
            table = WeightTable.parse(route.initial_weights(), route.upstreams)
            self.routes[name] = Route(name, route, table)
            self.metrics.set_weights(name, route, table)

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        parts = path.strip("/").split("/")
        if method == "POST" and parts[0] == "v2" and parts[-1] == "infer":
            await self._infer(scope, receive, send, parts)
        elif method == "GET" and parts[0] == "v2":
            await self._v2_get(send, parts)
        elif method == "GET" and path == "/metrics":
            await _respond(
                send,
                200,
                generate_latest(self.metrics.registry),
                [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            )
        elif parts[0] == "admin":
            await self._admin(scope, receive, send, method, parts)
        else:
            await _error(send, 404, f"no route for {method} {path}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.upstream.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- inference ----------------------------------------------------------------------

    async def _infer(self, scope: Scope, receive: Receive, send: Send, parts: list[str]) -> None:
        # /v2/models/{m}/infer or /v2/models/{m}/versions/{v}/infer
        if len(parts) == 4 and parts[1] == "models":
            model, pinned = parts[2], None
        elif len(parts) == 6 and parts[1] == "models" and parts[3] == "versions":
            model, pinned = parts[2], parts[4]
        else:
            await _error(send, 404, f"no route for POST {scope['path']}")
            return
        route = self.routes.get(model)
        if route is None:
            await _error(send, 404, self._unknown_model(model))
            return
        headers = _headers(scope)
        pinned = pinned or headers.get(metrics_contract.VERSION_HEADER)
        if pinned is not None and pinned not in route.config.upstreams:
            versions = ", ".join(route.config.upstreams)
            await _error(
                send,
                404,
                f"model {model!r} has no version {pinned!r} behind this gateway "
                f"(versions: {versions})",
            )
            return
        try:
            body = await _read_body(receive, headers, self.config.max_body_bytes)
        except BodyTooLarge as exc:
            await _error(send, 413, str(exc))
            return
        forward = {k: headers[k] for k in PASSED_HEADERS if k in headers}
        version = pinned or route.table.choose(self.draw())
        response, served, note = await self._send_infer(
            route, version, body, forward, pinned is None
        )
        extra = [(metrics_contract.VERSION_HEADER.encode(), served.encode())]
        if note:
            extra.append((b"x-modelcanary-retried-from", version.encode()))
        await _respond(send, response.status, response.body, response.headers + extra)

    async def _send_infer(
        self, route: Route, version: str, body: bytes, headers: dict[str, str], may_retry: bool
    ) -> tuple[UpstreamResponse, str, bool]:
        """Send to one version; on a refused canary, once more to stable if configured."""
        started = time.perf_counter()
        url = f"{route.config.upstreams[version]}/v2/models/{route.name}/versions/{version}/infer"
        try:
            response = await self.upstream.request("POST", url, body, headers)
        except UpstreamRefused as exc:
            self.metrics.observe(route.name, version, 502, time.perf_counter() - started)
            stable = route.config.stable
            if may_retry and route.config.retry_on_refused and version != stable:
                retried, _, _ = await self._send_infer(route, stable, body, headers, False)
                return retried, stable, True
            return (
                _json_response(
                    502, f"version {version} of {route.name} at {url} refused the connection: {exc}"
                ),
                version,
                False,
            )
        except UpstreamTimeout:
            self.metrics.observe(route.name, version, 504, time.perf_counter() - started)
            timeout = self.config.upstream_timeout_s
            return (
                _json_response(
                    504,
                    f"version {version} of {route.name} at {url} did not answer "
                    f"within {timeout:g} s",
                ),
                version,
                False,
            )
        self.metrics.observe(route.name, version, response.status, time.perf_counter() - started)
        return response, version, False

    # -- metadata, readiness, health --------------------------------------------------------

    async def _v2_get(self, send: Send, parts: list[str]) -> None:
        if parts == ["v2"]:
            await _json(
                send, 200, {"name": "modelcanary-gateway", "version": __version__, "extensions": []}
            )
        elif parts == ["v2", "health", "live"]:
            await _respond(send, 200, b"", [])
        elif parts == ["v2", "health", "ready"]:
            problems = [p for route in self.routes.values() for p in await self._unready(route)]
            if problems:
                await _error(send, 503, "; ".join(problems))
            else:
                await _respond(send, 200, b"", [])
        elif len(parts) >= 3 and parts[1] == "models":
            await self._model_get(send, parts)
        else:
            await _error(send, 404, f"no route for GET /{'/'.join(parts)}")

    async def _model_get(self, send: Send, parts: list[str]) -> None:
        route = self.routes.get(parts[2])
        if route is None:
            await _error(send, 404, self._unknown_model(parts[2]))
            return
        rest = parts[3:]
        if rest == ["ready"]:
            problems = await self._unready(route)
            if problems:
                await _error(send, 503, "; ".join(problems))
            else:
                await _respond(send, 200, b"", [])
            return
        if rest in ([], ["config"]):
            version = route.config.stable
        elif (
            len(rest) in (2, 3)
            and rest[0] == "versions"
            and rest[2:] in ([], ["ready"], ["config"])
        ):
            version = rest[1]
            if version not in route.config.upstreams:
                await _error(
                    send,
                    404,
                    f"model {route.name!r} has no version {version!r} behind this gateway",
                )
                return
            rest = rest[2:]
        else:
            await _error(send, 404, f"no route for GET /{'/'.join(parts)}")
            return
        suffix = "/" + rest[0] if rest else ""
        url = f"{route.config.upstreams[version]}/v2/models/{route.name}/versions/{version}{suffix}"
        try:
            response = await self.upstream.request("GET", url, None, {})
        except UpstreamRefused as exc:
            await _error(
                send,
                502,
                f"version {version} of {route.name} at {url} refused the connection: {exc}",
            )
            return
        except UpstreamTimeout:
            await _error(
                send, 504, f"version {version} of {route.name} at {url} did not answer in time"
            )
            return
        await _respond(send, response.status, response.body, response.headers)

    async def _unready(self, route: Route, table: WeightTable | None = None) -> list[str]:
        """Why the versions that receive traffic are not all ready (empty when they are)."""
        problems = []
        for version, weight in (table or route.table).weights:
            if weight == 0:
                continue
            url = (
                f"{route.config.upstreams[version]}/v2/models/{route.name}/versions/{version}/ready"
            )
            try:
                response = await self.upstream.request("GET", url, None, {})
                if response.status != 200:
                    problems.append(
                        f"{route.name} version {version} is not ready ({url}: {response.status})"
                    )
            except (UpstreamRefused, UpstreamTimeout) as exc:
                problems.append(f"{route.name} version {version} is unreachable at {url}: {exc}")
        return problems

    # -- admin --------------------------------------------------------------------------

    async def _admin(
        self, scope: Scope, receive: Receive, send: Send, method: str, parts: list[str]
    ) -> None:
        authorization = _headers(scope).get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.admin_token):
            challenge = [*JSON, (b"www-authenticate", b"Bearer")]
            await _respond(send, 401, _json_body({"error": NEEDS_TOKEN}), challenge)
            return
        if method == "GET" and parts == ["admin", "models"]:
            await _json(
                send,
                200,
                {"models": {name: self._route_view(r) for name, r in self.routes.items()}},
            )
            return
        if len(parts) != 4 or parts[1] != "models" or parts[3] != "weights":
            await _error(send, 404, f"no admin route for {method} {scope['path']}")
            return
        route = self.routes.get(parts[2])
        if route is None:
            await _error(send, 404, self._unknown_model(parts[2]))
            return
        if method == "GET":
            await _json(send, 200, self._route_view(route))
        elif method == "PUT":
            await self._set_weights(route, receive, send)
        else:
            await _error(send, 405, f"{method} is not allowed on {scope['path']}; use GET or PUT")

    async def _set_weights(self, route: Route, receive: Receive, send: Send) -> None:
        try:
            raw = await _read_body(receive, {}, 64 * 1024)
            document = json.loads(raw or b"null")
        except (BodyTooLarge, ValueError) as exc:
            await _error(
                send, 400, f'the body must be JSON like {{"weights": {{"1": 90, "2": 10}}}}: {exc}'
            )
            return
        if not isinstance(document, dict) or not isinstance(document.get("weights"), dict):
            await _error(send, 400, 'the body must be JSON like {"weights": {"1": 90, "2": 10}}')
            return
        stable = str(document.get("stable", route.config.stable))
        if stable not in route.config.upstreams:
            versions = ", ".join(route.config.upstreams)
            await _error(
                send, 400, f"stable version {stable!r} is not served (versions: {versions})"
            )
            return
        try:
            table = WeightTable.parse(document["weights"], route.config.upstreams)
        except UsageError as exc:
            await _error(send, 400, str(exc))
            return
        problems = await self._unready(route, table)
        if problems:
            await _error(send, 400, "; ".join(problems) + "; weights unchanged")
            return
        if stable != route.config.stable:
            route.config = route.config.model_copy(update={"stable": stable})
        route.table = table  # one assignment: each request sees the old table or the new one
        self.metrics.set_weights(route.name, route.config, table)
        await _json(send, 200, self._route_view(route))

    def _route_view(self, route: Route) -> dict[str, Any]:
        return {
            "model": route.name,
            "stable": route.config.stable,
            "weights": route.table.as_dict(),
            "upstreams": route.config.upstreams,
            "retry_on_refused": route.config.retry_on_refused,
        }

    def _unknown_model(self, model: str) -> str:
        return f"unknown model {model!r}; this gateway routes: {', '.join(self.routes)}"


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"request body of {declared} bytes exceeds the gateway's limit of {limit} bytes"
        )
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the gateway's limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def _json_body(document: object) -> bytes:
    return json.dumps(document).encode()


def _json_response(status: int, message: str) -> UpstreamResponse:
    return UpstreamResponse(status, list(JSON), _json_body({"error": message}))


async def _json(send: Send, status: int, document: object) -> None:
    await _respond(send, status, _json_body(document), JSON)


async def _error(send: Send, status: int, message: str) -> None:
    await _json(send, status, {"error": message})


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
