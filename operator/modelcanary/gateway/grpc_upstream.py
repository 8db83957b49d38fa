"""The gateway's gRPC client for its versions' upstreams (KServe v2 gRPC): a channel per
address, and an RPC to a version's replicas the way HTTP's requests go to them.

A version served by several replicas (grpc_upstreams lists one address a replica, in the
order of its HTTP upstreams: the same processes) has its RPCs balanced as HTTP's are, over
the replicas not down (modelcanary.gateway.replicas; the readiness probes are HTTP's), and
an RPC a replica answers UNAVAILABLE (refused, or cut by its death) goes to the next one
and marks that replica down.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import grpc
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.routes import Route

Code = grpc.StatusCode
NO_UPSTREAM = Code.FAILED_PRECONDITION  # a version without grpc_upstreams: never counted


@dataclass(frozen=True)
class Answer:
    """One version's answer: a response, or an error code and message."""

    response: Any
    code: grpc.StatusCode = Code.OK
    details: str = ""
    failed: bool = False  # the version's failure (retried on stable from a canary)


class GrpcUpstreams:
    """Channels to the upstreams, opened on first use, in the gRPC server's event loop."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.stubs: dict[str, Any] = {}
        self.channels: list[grpc.aio.Channel] = []

    def _stub(self, target: str) -> Any:
        stub = self.stubs.get(target)
        if stub is None:
            channel = grpc.aio.insecure_channel(target)
            self.channels.append(channel)
            stub = self.stubs[target] = pb_grpc.GRPCInferenceServiceStub(channel)
        return stub

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def call(
        self, route: Route, version: str, method: str, request: Any, named: str | None = None
    ) -> Answer:
        """One RPC to a version's upstream, the request naming that version (or `named`:
        "" for every version the upstream serves). With several replicas it goes to the next
        one, and to each other one not down while they answer UNAVAILABLE (refused, or died
        mid-request: an RPC the gateway forwards is idempotent), as HTTP's requests do."""
        addresses = route.config.grpc_upstreams.get(version)
        if addresses is None:
            return Answer(
                None,
                NO_UPSTREAM,
                f"version {version} of {route.name} has no gRPC upstream in the gateway's config",
            )
        if method == "ModelInfer":
            request.model_version = version
        else:
            request.version = version if named is None else named
        answer = Answer(None)
        for replica, target in self._targets(route, version, addresses):
            try:
                response = await getattr(self._stub(target), method)(
                    request, timeout=self.gateway.config.upstream_timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                details = f"version {version} of {route.name} at {target}: {exc.details()}"
                answer = Answer(None, exc.code(), details)
                if exc.code() != Code.UNAVAILABLE:
                    return answer
                self._refused(route, version, replica)
                continue
            return Answer(response)
        return answer

    @staticmethod
    def _targets(route: Route, version: str, addresses: list[str]) -> list[tuple[str | None, str]]:
        """The gRPC addresses to try, each with its replica's HTTP URL (None for a version's
        one address): the next replica in the version's round-robin, then the others not down."""
        if len(addresses) == 1:
            return [(None, addresses[0])]
        replicas = route.replicas[version]
        first = replicas.pick()
        others = [url for url in replicas.urls if url != first and url not in replicas.down]
        return [(url, addresses[replicas.urls.index(url)]) for url in [first, *others]]

    def _refused(self, route: Route, version: str, replica: str | None) -> None:
        """A replica answered UNAVAILABLE: down, as a refused HTTP request makes it (on the
        HTTP server's loop, which owns the readiness state), until a probe finds it ready."""
        g = self.gateway
        if replica is None or g.loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the HTTP server's loop closed (a restart)
            g.loop.call_soon_threadsafe(g.readiness.refused, route, version, replica)
