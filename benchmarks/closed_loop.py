"""The benchmarks' closed-loop clients: each sends its next request when its last one is
answered, so the server's speed sets the pace (bench_gateway, bench_shadow), over HTTP or
gRPC."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import triton_to_np_dtype

from modelcanary.load.report import percentile


async def closed_loop(
    url: str, bodies: list[bytes], concurrency: int, seconds: float, warmup_s: float
) -> dict[str, float]:
    """`concurrency` clients sending back to back for `seconds` after `warmup_s` unrecorded;
    latency in ms, and the requests sent in all (with the warm-up)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(index: int) -> bool:
            body = bodies[index % len(bodies)]
            headers = {"content-type": "application/json"}
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status != 200

        return await _drive(send, concurrency, seconds, warmup_s)


async def _drive(
    send: Callable[[int], Awaitable[bool]], concurrency: int, seconds: float, warmup_s: float
) -> dict[str, float]:
    """Run the closed loop over `send(index)`, which answers whether the request failed."""
    latencies: list[float] = []
    errors = sent = 0

    async def client(offset: int, until: float, record: bool) -> None:
        nonlocal errors, sent
        index = offset
        while time.perf_counter() < until:
            started = time.perf_counter()
            failed = await send(index)
            index += concurrency
            sent += 1
            if record:
                latencies.append((time.perf_counter() - started) * 1000)
                errors += failed

    warm = time.perf_counter() + warmup_s
    await asyncio.gather(*(client(i, warm, False) for i in range(concurrency)))
    start = time.perf_counter()
    await asyncio.gather(*(client(i, start + seconds, True) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "sent": sent,  # with the warm-up: what the CPU and pair counts cover
        "errors": errors,
        "throughput": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def grpc_requests(bodies: list[bytes], model: str) -> list[Any]:
    """The JSON inference bodies as KServe v2 gRPC requests (raw tensor contents)."""
    requests = []
    for body in bodies:
        document = json.loads(body)
        request = pb.ModelInferRequest(model_name=model)
        for tensor in document["inputs"]:
            array = np.asarray(tensor["data"], dtype=triton_to_np_dtype(tensor["datatype"]))
            request.inputs.add(
                name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
            )
            request.raw_input_contents.append(array.tobytes())
        requests.append(request)
    return requests


async def grpc_closed_loop(
    address: str,
    requests: list[Any],
    version: str,
    concurrency: int,
    seconds: float,
    warmup_s: float,
) -> dict[str, float]:
    """As `closed_loop`, over gRPC (ModelInfer) on one channel; `version` pins the requests
    ("" lets the gateway choose)."""
    for request in requests:
        request.model_version = version
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def send(index: int) -> bool:
            try:
                await stub.ModelInfer(requests[index % len(requests)])
            except grpc.aio.AioRpcError:
                return True
            return False

        return await _drive(send, concurrency, seconds, warmup_s)
