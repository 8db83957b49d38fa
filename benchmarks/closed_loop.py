"""The benchmarks' closed-loop clients: each sends its next request when its last one is
answered, so the server's speed sets the pace (bench_gateway, bench_shadow)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from modelcanary.load.report import percentile


async def closed_loop(
    url: str, bodies: list[bytes], concurrency: int, seconds: float, warmup_s: float
) -> dict[str, float]:
    """`concurrency` clients sending back to back for `seconds` after `warmup_s` unrecorded;
    latency in ms, and the requests sent in all (with the warm-up)."""
    latencies: list[float] = []
    errors = sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(offset: int, until: float, record: bool) -> None:
            nonlocal errors, sent
            index = offset
            while time.perf_counter() < until:
                body = bodies[index % len(bodies)]
                index += concurrency
                started = time.perf_counter()
                async with session.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as response:
                    await response.read()
                    sent += 1
                    if record:
                        latencies.append((time.perf_counter() - started) * 1000)
                        errors += response.status != 200

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
