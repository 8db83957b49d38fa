"""KServe v2 gRPC (GRPCInferenceService) beside HTTP, in the gateway's process.

ModelInfer gets what the HTTP routes get: the model's weighted split, a version pinned
by the request's `model_version` or the metadata key `x-modelcanary-version`, the header
checks (modelcanary.gateway.grpc_checks), the same per-version metrics (a gRPC answer
counts as the HTTP code it stands for: OK 200, UNAVAILABLE 502, DEADLINE_EXCEEDED 504,
any other failure 500), client errors (INVALID_ARGUMENT, OUT_OF_RANGE, NOT_FOUND from the
version are the client's) and the retry on stable within the same budget. The answer's
initial metadata names the version (`x-modelcanary-version`, and
`x-modelcanary-retried-from` after a retry); the response's `model_version` does too.
A stable answer is mirrored to the shadow comparator as HTTP does, its tensors converted
to JSON (modelcanary.gateway.grpc_json). ModelStreamInfer is
refused (UNIMPLEMENTED), the control RPCs too (PERMISSION_DENIED: repository, shared
memory, trace, logging). Metadata, readiness and statistics come from an upstream;
ModelConfig is the model's public config, from the gateway's repository
(modelcanary.gateway.public_config), what perf_analyzer asks for before it sends.

The RPCs to the versions' replicas go as HTTP's requests do: balanced, and a replica that
answers UNAVAILABLE is skipped (modelcanary.gateway.grpc_upstream).

The server runs its own event loop in a thread (modelcanary.gateway.grpc_thread); what it
shares with the HTTP side (routes, metrics, budgets) is thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelcanary import __version__, metrics_contract
from modelcanary.gateway.app import Gateway
from modelcanary.gateway.client_errors import INVALID_REQUEST
from modelcanary.gateway.grpc_checks import check_grpc_request
from modelcanary.gateway.grpc_json import request_json, response_json
from modelcanary.gateway.grpc_thread import GrpcThread
from modelcanary.gateway.grpc_upstream import NO_UPSTREAM, Answer, GrpcUpstreams
from modelcanary.gateway.public_config import no_config
from modelcanary.gateway.routes import Route, unknown_model

Code = grpc.StatusCode
CLIENT_CODES = (Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE, Code.NOT_FOUND)
AS_HTTP = {Code.OK: 200, Code.UNAVAILABLE: 502, Code.DEADLINE_EXCEEDED: 504}
JSON_HEADERS = {"content-type": "application/json"}
CONTROL = (
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
)


class GrpcGateway(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The gRPC service, over the HTTP gateway's routes, metrics and budgets."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.upstreams = GrpcUpstreams(gateway)

    # -- inference ----------------------------------------------------------------------

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        g = self.gateway
        route = await self._route(request.model_name, context)
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        pinned = request.model_version or metadata.get(metrics_contract.VERSION_HEADER)
        await self._known(route, pinned, context)
        version = pinned or route.serving.choose(g.draw())
        rejection = check_grpc_request(request, g.limits[route.name])
        if rejection is not None:
            g.metrics.client_error(route.name, version, rejection.reason)
            await context.abort(Code.INVALID_ARGUMENT, rejection.message)
        if metrics_contract.PROBE_HEADER in metadata and pinned:
            answer = await self.upstreams.call(route, version, "ModelInfer", request)
            code = AS_HTTP.get(answer.code, 400 if answer.code in CLIENT_CODES else 500)
            g.metrics.probes.labels(route.name, version, str(code)).inc()
            return await self._reply(context, answer, version, None)
        not_ready = g.readiness.is_unready(route, version)
        if not_ready is not None:  # as HTTP's 503: not held for the timeout
            g.metrics.observe(route.name, version, 503, 0.0)
            await context.abort(Code.UNAVAILABLE, not_ready)
        if not pinned:
            g.budgets[route.name].request(time.monotonic())
        answer, answered_by = await self._attempt(route, version, request), version
        if answer.failed and not pinned and g.retry_on_stable(route, version):
            answered_by = route.config.stable
            answer = await self._attempt(route, answered_by, request)
            g.count_retry(route, version, answer.failed)
        retried = version if answered_by != version else None
        if answer.response is not None and retried is None:
            self._mirror(route.name, version, request, answer.response)
        return await self._reply(context, answer, answered_by, retried)

    def _mirror(self, model: str, version: str, request: Any, response: Any) -> None:
        """Offer a stable answer to the shadow comparator (on the HTTP server's loop), as
        JSON; only when the model is shadowed by a canary of this stable version."""
        g = self.gateway
        target = g.comparator.targets.get(model)
        if target is None or target.stable != version or g.loop is None:
            return
        # a tensor not converted: empty bodies, which the comparator counts as unparseable
        body, answer = request_json(request) or b"", response_json(response) or b""
        with contextlib.suppress(RuntimeError):  # the HTTP server's loop closed (a restart)
            g.loop.call_soon_threadsafe(
                g.comparator.offer, model, version, body, JSON_HEADERS, answer, []
            )

    async def _attempt(self, route: Route, version: str, request: Any) -> Answer:
        """One version's answer, counted in its metrics as the HTTP gateway counts."""
        started = time.perf_counter()
        answer = await self.upstreams.call(route, version, "ModelInfer", request)
        metrics = self.gateway.metrics
        if answer.code == NO_UPSTREAM:  # the gateway's configuration, not the version
            return answer
        if answer.code in CLIENT_CODES:
            metrics.client_error(route.name, version, INVALID_REQUEST, answered=400)
            return answer
        code = AS_HTTP.get(answer.code, 500)
        metrics.observe(route.name, version, code, time.perf_counter() - started)
        return Answer(answer.response, answer.code, answer.details, failed=code >= 500)

    async def _reply(
        self,
        context: grpc.aio.ServicerContext,
        answer: Answer,
        version: str,
        retried_from: str | None,
    ) -> Any:
        metadata = [(metrics_contract.VERSION_HEADER, version)]
        if retried_from is not None:
            metadata.append(("x-modelcanary-retried-from", retried_from))
        await context.send_initial_metadata(metadata)
        if answer.response is None:
            await context.abort(answer.code, answer.details)
        return answer.response

    async def ModelStreamInfer(  # noqa: N802
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        await context.abort(
            Code.UNIMPLEMENTED,
            "the modelcanary gateway does not split streams (ModelStreamInfer); "
            "use ModelInfer, or Triton's own gRPC port",
        )
        yield  # an async generator, as a streaming method must be

    # -- metadata, readiness, health, statistics -------------------------------------------

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        routes = self.gateway.routes.values()
        return pb.ServerReadyResponse(ready=all([await self._ready(r) for r in routes]))

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(name="modelcanary-gateway", version=__version__)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        route = await self._route(request.name, context)
        if not request.version:
            return pb.ModelReadyResponse(ready=await self._ready(route))
        return await self._forward(route, request, "ModelReady", context)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._forward(
            await self._route(request.name, context), request, "ModelMetadata", context
        )

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """The model's public config (modelcanary.gateway.public_config), for any version."""
        route = await self._route(request.name, context)
        await self._known(route, request.version or None, context)
        config = self.gateway.public_configs[route.name]
        if config is None:
            await context.abort(Code.NOT_FOUND, no_config(route.name))
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """A version's statistics; unversioned, every version stable's upstream serves."""
        if not request.name:
            await context.abort(Code.INVALID_ARGUMENT, "name a model: the gateway routes models")
        route = await self._route(request.name, context)
        if request.version:
            return await self._forward(route, request, "ModelStatistics", context)
        answer = await self.upstreams.call(
            route, route.config.stable, "ModelStatistics", request, ""
        )
        return await self._unwrap(answer, context)

    async def _forward(
        self, route: Route, request: Any, method: str, context: grpc.aio.ServicerContext
    ) -> Any:
        """A read-only RPC to the version named (default: stable)."""
        version = request.version or route.config.stable
        await self._known(route, version, context)
        return await self._unwrap(
            await self.upstreams.call(route, version, method, request), context
        )

    async def _unwrap(self, answer: Answer, context: grpc.aio.ServicerContext) -> Any:
        if answer.response is None:
            await context.abort(answer.code, answer.details)
        return answer.response

    async def _ready(self, route: Route) -> bool:
        """Whether every version with traffic is ready."""
        for version, weight in route.table.weights:
            if weight == 0:
                continue
            request = pb.ModelReadyRequest(name=route.name)
            answer = await self.upstreams.call(route, version, "ModelReady", request)
            if answer.response is None or not answer.response.ready:
                return False
        return True

    async def _route(self, model: str, context: grpc.aio.ServicerContext) -> Route:
        route = self.gateway.routes.get(model)
        if route is None:
            await context.abort(Code.NOT_FOUND, unknown_model(self.gateway.routes, model))
        assert route is not None
        return route

    async def _known(self, route: Route, version: str | None, context: Any) -> None:
        if version is not None and version not in route.config.upstreams:
            versions = ", ".join(route.config.upstreams)
            await context.abort(
                Code.NOT_FOUND,
                f"model {route.name!r} has no version {version!r} behind this gateway "
                f"(versions: {versions})",
            )


def refuse_control_rpcs(servicer: type, server: str) -> None:
    """Make each of Triton's control RPCs on `servicer` answer PERMISSION_DENIED, in one
    line naming `server` (what refuses to forward it)."""

    def refusal(name: str) -> Any:
        async def refuse(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                Code.PERMISSION_DENIED,
                f"{name} is a Triton control API; {server} does not forward it",
            )

        refuse.__name__ = name
        return refuse

    for name in CONTROL:
        setattr(servicer, name, refusal(name))


refuse_control_rpcs(GrpcGateway, "the modelcanary gateway")


class GrpcServer(GrpcThread):
    """The gateway's gRPC service on one address (modelcanary.gateway.grpc_thread). A
    supervised part (modelcanary.local.supervisor): `exited` says why its thread ended,
    `restart` serves again on the same address; meanwhile the gateway's health (HTTP's
    /v2/health/live and /ready) is 503 naming it."""

    title = "the gateway's gRPC server"

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.gateway = gateway
        gateway.other_servers.append(self.stopped)

    def make_service(self) -> GrpcGateway:
        return GrpcGateway(self.gateway)

    def max_message(self) -> int:
        return self.gateway.config.max_body_bytes

    async def close_service(self, service: GrpcGateway) -> None:
        await service.upstreams.close()

    @property
    def pid(self) -> int:
        return os.getpid()

    def stopped(self) -> str | None:
        """What the gateway's health says while this server does not serve (else None)."""
        reason = self.exited()
        if reason is None:
            return None
        return f"the gateway's gRPC server on {self.address} stopped ({reason})"

    def restart(self, timeout: float = 10.0) -> str:
        """Serve again on the same address after the thread ended."""
        self.stop(timeout)
        return self.start(timeout)
