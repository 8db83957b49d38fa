"""The gateway as a plain ASGI application.

Open Inference Protocol (KServe v2) paths the clients use:

    POST /v2/models/{m}/infer                  weighted choice of a version
    POST /v2/models/{m}/versions/{v}/infer     that version (as does header x-modelcanary-version)
    GET  /v2/models/{m}[/versions/{v}][/ready] metadata and readiness, from the upstream
    GET  /v2/models/{m}[/versions/{v}]/stats   Triton's statistics (unversioned: every
                                               version stable's upstream serves)
    GET  /v2/models/{m}[/versions/{v}]/config  the model's public config, from the gateway's
                                               repository (modelcanary.gateway.public_config)
    GET  /v2/health/live, /v2/health/ready, /v2
    GET  /metrics                              per-version requests, latency, weights

and the admin API under /admin (see modelcanary.gateway.admin). A share of the requests
the stable version answers is mirrored to the shadow comparator, which runs in this
process (see modelcanary.shadow.live_comparison) once the user has been answered. Inference
requests the
client broke are answered 4xx and counted as client errors of the version they were routed
to, never as its errors (see modelcanary.gateway.client_errors); the header of every
inference request is checked before it is forwarded (modelcanary.gateway.infer_checks).
Nothing else reaches the upstreams: not Triton's control APIs (model repository, model
config: the gateway answers its public part itself, shared memory, logging, trace), which
Triton keeps to the stack's own key.

It is a plain ASGI callable rather than a framework app because every request on the hot
path pays for what the framework does; the routes are few and fixed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import replace

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelcanary import __version__, metrics_contract
from modelcanary.errors import UsageError
from modelcanary.gateway.admin import AdminApi
from modelcanary.gateway.client_errors import (
    BODY_TOO_LARGE,
    CLIENT_GONE,
    INVALID_REQUEST,
    Rejection,
    blames_request,
)
from modelcanary.gateway.config import GatewayConfig
from modelcanary.gateway.infer_checks import check_infer_request, model_limits
from modelcanary.gateway.metrics import GatewayMetrics
from modelcanary.gateway.public_config import config_json, no_config, public_config
from modelcanary.gateway.readiness import Abandoned, ReadinessWatch
from modelcanary.gateway.retry import ANSWERED, FAILED, OVER_BUDGET, RetryBudget
from modelcanary.gateway.routes import READY_TIMEOUT_S, Route, unknown_model, unready
from modelcanary.gateway.weights import WeightTable
from modelcanary.http.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    error_response,
    lifespan,
    read_body,
    request_headers,
    respond,
    respond_error,
    respond_json,
)
from modelcanary.http.upstream import (
    PASSED_HEADERS,
    Upstream,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamTimeout,
)
from modelcanary.shadow.live_comparison import Comparator
from modelcanary.shadow.metrics import ShadowMetrics

METRICS_CONTENT = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
# What GET /v2/models/{m}/versions/{v}/... may read from the upstream: metadata, readiness
# and inference statistics; never the model config (a control API).
READ_ONLY: tuple[list[str], ...] = ([], ["ready"], ["stats"])


class Gateway:
    """The ASGI application. `draw` returns a uniform number in [0, 1) per request; `say`
    hears when a version stops or starts being ready."""

    def __init__(
        self,
        config: GatewayConfig,
        admin_token: str,
        draw: Callable[[], float] = random.random,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not admin_token:
            raise UsageError("the gateway needs an admin token")
        self.config = config
        self.draw = draw
        self.metrics = GatewayMetrics()
        self.upstream = Upstream(config.upstream_timeout_s)
        self.routes: dict[str, Route] = {}
        for name, route in config.models.items():
            table = WeightTable.parse(route.initial_weights(), route.upstreams)
            self.routes[name] = Route(name, route, table)
            self.metrics.set_weights(name, route, table)
        self.budgets = {name: RetryBudget(config.retry) for name in config.models}
        self.limits = {
            name: model_limits(config.shadow.repository, name, config.max_body_bytes)
            for name in config.models
        }
        self.public_configs = {
            name: public_config(config.shadow.repository, name) for name in config.models
        }
        self.comparator = Comparator(config.shadow, ShadowMetrics(self.metrics.registry), say=say)
        self.admin = AdminApi(
            admin_token, self.routes, self.metrics, self.upstream, self.comparator
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        # the gateway's other servers (gRPC): each says why it does not serve (None: it does)
        self.other_servers: list[Callable[[], str | None]] = []
        self.readiness = ReadinessWatch(
            self.routes, self.upstream, config.readiness_interval_s, say
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._start, self._stop)
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
            await respond(send, 200, generate_latest(self.metrics.registry), METRICS_CONTENT)
        elif parts[0] == "admin":
            await self.admin(scope, receive, send)
        else:
            await respond_error(send, 404, f"no route for {method} {path}")

    async def _start(self) -> None:
        self.loop = asyncio.get_running_loop()  # the gRPC server mirrors into it
        await self.upstream.open()
        await self.readiness.start()
        await self.comparator.start()

    async def _stop(self) -> None:
        await self.comparator.stop()
        await self.readiness.stop()
        await self.upstream.close()

    # -- inference ----------------------------------------------------------------------

    async def _infer(self, scope: Scope, receive: Receive, send: Send, parts: list[str]) -> None:
        # /v2/models/{m}/infer or /v2/models/{m}/versions/{v}/infer
        if len(parts) == 4 and parts[1] == "models":
            model, pinned = parts[2], None
        elif len(parts) == 6 and parts[1] == "models" and parts[3] == "versions":
            model, pinned = parts[2], parts[4]
        else:
            await respond_error(send, 404, f"no route for POST {scope['path']}")
            return
        route = self.routes.get(model)
        if route is None:
            await respond_error(send, 404, unknown_model(self.routes, model))
            return
        headers = request_headers(scope)
        pinned = pinned or headers.get(metrics_contract.VERSION_HEADER)
        if pinned is not None and pinned not in route.config.upstreams:
            versions = ", ".join(route.config.upstreams)
            await respond_error(
                send,
                404,
                f"model {model!r} has no version {pinned!r} behind this gateway "
                f"(versions: {versions})",
            )
            return
        version = pinned or route.serving.choose(self.draw())
        routed_to = [(metrics_contract.VERSION_HEADER.encode(), version.encode())]
        try:
            body = await read_body(receive, headers, self.config.max_body_bytes)
            rejection = check_infer_request(body, headers, self.limits[model])
        except BodyTooLarge as exc:
            rejection = Rejection(413, BODY_TOO_LARGE, str(exc))
        except ClientGone:
            self.metrics.client_error(model, version, CLIENT_GONE)
            return
        if rejection is not None:
            self.metrics.client_error(model, version, rejection.reason)
            await respond_error(send, rejection.status, rejection.message, routed_to)
            return
        forward = {k: headers[k] for k in PASSED_HEADERS if k in headers}
        if metrics_contract.PROBE_HEADER in headers and pinned is not None:
            url = route.version_url(version, "/infer")
            try:
                response = await self.upstream.request("POST", url, body, forward)
            except (UpstreamRefused, UpstreamTimeout) as exc:
                response = error_response(502, f"version {version} at {url}: {exc}")
            self.metrics.probes.labels(model, version, str(response.status)).inc()
            await respond(send, response.status, response.body, response.headers + routed_to)
            return
        not_ready = self.readiness.is_unready(route, version)
        if not_ready is not None:  # a hung upstream would hold the request for the timeout
            self.metrics.observe(route.name, version, 503, 0.0)
            await respond_error(send, 503, not_ready, routed_to)
            return
        if pinned is None:
            self.budgets[model].request(time.monotonic())
        response, answered_by, retried = await self._send_infer(
            route, version, body, forward, pinned is None
        )
        extra = [(metrics_contract.VERSION_HEADER.encode(), answered_by.encode())]
        if retried:
            extra.append((b"x-modelcanary-retried-from", version.encode()))
        await respond(send, response.status, response.body, response.headers + extra)
        if response.status == 200 and not retried:
            self.comparator.offer(
                model, answered_by, body, forward, response.body, response.headers
            )

    async def _send_infer(
        self, route: Route, version: str, body: bytes, headers: dict[str, str], may_retry: bool
    ) -> tuple[UpstreamResponse, str, bool]:
        """Send to one version; when a canary fails a request that may be retried, once
        more to stable within the budget (modelcanary.gateway.retry). Returns the answer,
        the version that gave it, and whether it is a retry's."""
        response, failed = await self._attempt(route, version, body, headers)
        if not (failed and may_retry and self.retry_on_stable(route, version)):
            return response, version, False
        retried, stable_failed = await self._attempt(route, route.config.stable, body, headers)
        self.count_retry(route, version, stable_failed)
        return retried, route.config.stable, True

    def retry_on_stable(self, route: Route, version: str) -> bool:
        """Whether a request `version` failed (not pinned by the client) goes once more to
        stable: a canary's, with retries on and within the budget (else counted
        over_budget). Shared by the HTTP and the gRPC server."""
        stable = route.config.stable
        if version == stable or not self.config.retry.enabled:
            return False
        if self.budgets[route.name].allow(time.monotonic()):
            return True
        self.metrics.retries.labels(route.name, version, stable, OVER_BUDGET).inc()
        return False

    def count_retry(self, route: Route, version: str, stable_failed: bool) -> None:
        outcome = FAILED if stable_failed else ANSWERED
        self.metrics.retries.labels(route.name, version, route.config.stable, outcome).inc()

    async def _attempt(
        self, route: Route, version: str, body: bytes, headers: dict[str, str]
    ) -> tuple[UpstreamResponse, bool]:
        """One version's answer, counted in its metrics, and whether it is the version's
        failure (a server error, a refused connection, a timeout). An answer that blames
        the request is a client error, answered 400."""
        started = time.perf_counter()
        url = route.version_url(version, "/infer")
        try:
            response = await self.readiness.send(
                route, version, url, lambda url: self.upstream.request("POST", url, body, headers)
            )
        except Abandoned as exc:
            self.metrics.observe(route.name, version, 503, time.perf_counter() - started)
            return error_response(503, str(exc)), True  # hung: like a timeout
        except UpstreamRefused as exc:
            self.metrics.observe(route.name, version, 502, time.perf_counter() - started)
            self.readiness.refused(route, version, url)
            message = f"version {version} of {route.name} at {url} refused the connection: {exc}"
            return error_response(502, message), True
        except UpstreamTimeout:
            self.metrics.observe(route.name, version, 504, time.perf_counter() - started)
            timeout = self.config.upstream_timeout_s
            message = (
                f"version {version} of {route.name} at {url} did not answer within {timeout:g} s"
            )
            return error_response(504, message), True
        if blames_request(response):
            self.metrics.client_error(route.name, version, INVALID_REQUEST, answered=400)
            return replace(response, status=400), False
        self.metrics.observe(route.name, version, response.status, time.perf_counter() - started)
        return response, response.status >= 500

    # -- metadata, readiness, health --------------------------------------------------------

    async def _v2_get(self, send: Send, parts: list[str]) -> None:
        if parts == ["v2"]:
            await respond_json(
                send, 200, {"name": "modelcanary-gateway", "version": __version__, "extensions": []}
            )
        elif parts == ["v2", "health", "live"]:
            await self._readiness(send, self._servers_down())
        elif parts == ["v2", "health", "ready"]:
            routes = self.routes.values()
            await self._readiness(
                send,
                [
                    *self._servers_down(),
                    *[p for r in routes for p in await unready(self.upstream, r)],
                ],
            )
        elif len(parts) >= 3 and parts[1] == "models":
            await self._model_get(send, parts)
        else:
            await respond_error(send, 404, f"no route for GET /{'/'.join(parts)}")

    def _servers_down(self) -> list[str]:
        return [problem for down in self.other_servers if (problem := down()) is not None]

    async def _readiness(self, send: Send, problems: list[str]) -> None:
        if problems:
            await respond_error(send, 503, "; ".join(problems))
        else:
            await respond(send, 200, b"", [])

    async def _config(self, send: Send, route: Route, rest: list[str]) -> None:
        """The model's public config (modelcanary.gateway.public_config), for any version."""
        if len(rest) != 1 and (len(rest) != 3 or rest[1] not in route.config.upstreams):
            await respond_error(send, 404, f"no such version of {route.name} behind this gateway")
            return
        config = self.public_configs[route.name]
        if config is None:
            await respond_error(send, 404, no_config(route.name))
            return
        await respond_json(send, 200, config_json(config))

    async def _model_get(self, send: Send, parts: list[str]) -> None:
        route = self.routes.get(parts[2])
        if route is None:
            await respond_error(send, 404, unknown_model(self.routes, parts[2]))
            return
        rest = parts[3:]
        if rest[-1:] == ["config"] and (rest == ["config"] or rest[:1] == ["versions"]):
            await self._config(send, route, rest)
            return
        if rest == ["ready"]:
            await self._readiness(send, await unready(self.upstream, route))
            return
        if rest in ([], ["stats"]):
            version = route.config.stable
        elif len(rest) in (2, 3) and rest[0] == "versions" and rest[2:] in READ_ONLY:
            version = rest[1]
            if version not in route.config.upstreams:
                await respond_error(
                    send,
                    404,
                    f"model {route.name!r} has no version {version!r} behind this gateway",
                )
                return
            rest = rest[2:]
        else:
            await respond_error(send, 404, f"no route for GET /{'/'.join(parts)}")
            return
        if parts[3:] == ["stats"]:  # every version stable's upstream serves
            url = f"{route.config.upstreams[version]}/v2/models/{route.name}/stats"
        else:
            url = route.version_url(version, "/" + rest[0] if rest else "")
        probe = rest == ["ready"]  # asked live, like the readiness probes, and as briefly
        not_ready = None if probe else self.readiness.is_unready(route, version)
        if not_ready is not None:
            await respond_error(send, 503, not_ready)
            return
        try:
            async with asyncio.timeout(READY_TIMEOUT_S if probe else None):
                response = await self.upstream.request("GET", url, None, {})
        except UpstreamRefused as exc:
            await respond_error(
                send,
                502,
                f"version {version} of {route.name} at {url} refused the connection: {exc}",
            )
            return
        except (UpstreamTimeout, TimeoutError):
            await respond_error(
                send, 504, f"version {version} of {route.name} at {url} did not answer in time"
            )
            return
        await respond(send, response.status, response.body, response.headers)
