"""The request guard's KServe v2 gRPC, in front of one Triton's gRPC (`modelcanary guard
--grpc-listen ... --grpc-upstream ...`): what the HTTP guard (modelcanary.gateway.guard)
does for HTTP.

    ModelInfer                     checked (modelcanary.gateway.grpc_checks), then forwarded
                                   as sent; a refused one is INVALID_ARGUMENT, in one line
    ServerLive, ServerReady, ServerMetadata,
    ModelReady, ModelMetadata, ModelStatistics   passed through, for the models served
    ModelConfig                    the public config, from the repository (else NOT_FOUND)

Other models are NOT_FOUND; Triton's control RPCs (repository, shared memory, logging,
trace) PERMISSION_DENIED; ModelStreamInfer UNIMPLEMENTED. The guard never sends Triton's
control key with a client's RPC. Max batch sizes are the HTTP guard's (its `limits`,
shared); given the control key and not yet known, asked of Triton's gRPC ModelConfig.

The server runs its own event loop in a thread (modelcanary.gateway.grpc_thread).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelcanary.gateway.grpc_checks import check_grpc_request
from modelcanary.gateway.grpc_server import refuse_control_rpcs
from modelcanary.gateway.grpc_thread import GrpcThread
from modelcanary.gateway.guard import RequestGuard
from modelcanary.gateway.infer_checks import InferLimits
from modelcanary.gateway.public_config import no_config, public_config
from modelcanary.http.triton_control import GRPC_CONTROL_HEADER

Code = grpc.StatusCode


class GuardGrpc(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The gRPC service in front of Triton's gRPC at `upstream` (host:port), for the HTTP
    guard's models and limits."""

    def __init__(self, guard: RequestGuard, upstream: str, repository: Path | None) -> None:
        self.guard, self.upstream = guard, upstream
        self.configs = {m: public_config(repository, m) for m in guard.limits}
        self.channel: grpc.aio.Channel | None = None
        self.stub: Any = None

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self._served(request.model_name, context)
        rejection = check_grpc_request(request, await self._limits(request.model_name))
        if rejection is not None:
            await context.abort(Code.INVALID_ARGUMENT, rejection.message)
        return await self._forward("ModelInfer", request, context)

    async def ModelStreamInfer(  # noqa: N802
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        await context.abort(
            Code.UNIMPLEMENTED,
            "the modelcanary guard does not check streams (ModelStreamInfer); use ModelInfer",
        )
        yield  # an async generator, as a streaming method must be

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._forward("ServerLive", request, context)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._forward("ServerReady", request, context)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._forward("ServerMetadata", request, context)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self._served(request.name, context)
        return await self._forward("ModelReady", request, context)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self._served(request.name, context)
        return await self._forward("ModelMetadata", request, context)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        if not request.name:
            await context.abort(Code.INVALID_ARGUMENT, "name a model: the guard shows its own")
        await self._served(request.name, context)
        return await self._forward("ModelStatistics", request, context)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """The model's public config (modelcanary.gateway.public_config), for any version."""
        await self._served(request.name, context)
        config = self.configs[request.name]
        if config is None:
            await context.abort(Code.NOT_FOUND, no_config(request.name))
        return pb.ModelConfigResponse(config=config)

    async def _served(self, model: str, context: grpc.aio.ServicerContext) -> None:
        if model not in self.guard.limits:
            served = ", ".join(self.guard.limits)
            await context.abort(
                Code.NOT_FOUND, f"no model {model[:200]!r} behind this guard (models: {served})"
            )

    def _stub(self) -> Any:
        if self.stub is None:  # made on the server's loop
            self.channel = grpc.aio.insecure_channel(self.upstream)
            self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        return self.stub

    async def _forward(self, method: str, request: Any, context: Any) -> Any:
        """Triton's answer to the RPC (never with the control key), or its error."""
        try:
            return await getattr(self._stub(), method)(
                request, timeout=self.guard.upstream.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            details = (exc.details() or "").replace("\n", " ")
            await context.abort(exc.code(), f"Triton at {self.upstream}: {details}")

    async def _limits(self, model: str) -> InferLimits:
        """The model's limits, with its max batch size once known (shared with HTTP)."""
        guard = self.guard
        if guard.control_key is None or not guard.due_to_ask(model):
            return guard.limits[model]
        metadata = ((GRPC_CONTROL_HEADER, guard.control_key),)
        request = pb.ModelConfigRequest(name=model)
        with contextlib.suppress(grpc.aio.AioRpcError):  # not up: ModelInfer will say so
            answer = await self._stub().ModelConfig(
                request, timeout=guard.upstream.timeout_s, metadata=metadata
            )
            batch = answer.config.max_batch_size
            guard.limits[model] = replace(guard.limits[model], max_batch_size=batch)
        return guard.limits[model]

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


refuse_control_rpcs(GuardGrpc, "the modelcanary guard")


class GuardGrpcServer(GrpcThread):
    """The guard's gRPC service on host:port (modelcanary.gateway.grpc_thread)."""

    title = "the guard's gRPC server"

    def __init__(self, service: GuardGrpc, host: str, port: int, max_message: int) -> None:
        super().__init__(host, port)
        self.service, self.largest = service, max_message

    def make_service(self) -> GuardGrpc:
        return self.service

    def max_message(self) -> int:
        return self.largest

    async def close_service(self, service: GuardGrpc) -> None:
        await service.close()
