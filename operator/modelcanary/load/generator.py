"""`modelcanary load`: open-loop traffic built from a model's holdout or golden samples.

Request i is sent at start + i / rate whether or not earlier ones were answered (open
loop, as real users behave); a request due while `concurrency` are in flight is skipped
and counted, rather than delayed, so a slow server cannot slow the offered load down.
A run stopped early (`stop`: SIGINT or SIGTERM for the command) still reports what it sent.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np

from modelcanary.errors import UsageError, one_line
from modelcanary.load.report import LoadReport, Outcome, build_report
from modelcanary.metrics_contract import VERSION_HEADER
from modelcanary.modelrepo.golden import split_golden
from modelcanary.modelrepo.holdout_store import HOLDOUT, read_holdout
from modelcanary.modelrepo.manifest import GOLDEN
from modelcanary.modelrepo.oip import infer_body
from modelcanary.modelrepo.repository import ModelRepository

MAX_RATE = 100_000.0  # requests per second: beyond one client process
STOP_CHECK_S = 0.1  # how soon a stop is noticed between requests


def request_bodies(repo: Path, model: str, version: int | None = None) -> list[bytes]:
    """One Open Inference Protocol JSON body (batch of one) per sample of the version's
    labelled holdout, real inputs like a user's (so live inputs do not drift from the
    version's profile), or per golden sample when it has no holdout."""
    store = ModelRepository(repo)
    versions = store.versions(model)
    if not versions:
        raise UsageError(f"{repo}: no model {model!r} with versions to take samples from")
    directory = store.version_dir(model, version or versions[-1])
    if (directory / HOLDOUT).is_file():
        inputs, _ = read_holdout(directory / HOLDOUT)
    else:
        path = directory / GOLDEN
        if not path.is_file():
            raise UsageError(f"{path}: no golden samples to build requests from")
        with np.load(path, allow_pickle=False) as data:
            inputs, _ = split_golden({k: data[k] for k in data.files})
    count = next(iter(inputs.values())).shape[0]
    return [
        json.dumps(infer_body({n: a[i : i + 1] for n, a in inputs.items()})).encode()
        for i in range(count)
    ]


async def run_load(
    url: str,
    model: str,
    bodies: list[bytes],
    rate: float,
    duration_s: float,
    concurrency: int = 64,
    timeout_s: float = 30.0,
    stop: threading.Event | None = None,
    problems: list[tuple[float, str]] | None = None,
) -> LoadReport:
    """Offer `rate` requests per second for `duration_s` seconds (or until `stop` is set);
    report what came back. `problems`, if given, gets (wall time, what) for each request
    skipped, unanswered or answered with an error status, as it happens."""
    if not (0 < rate <= MAX_RATE and 0 < duration_s < math.inf) or concurrency < 1:
        raise UsageError(
            f"--rate must be positive and at most {MAX_RATE:g}, --duration positive and "
            "finite, --concurrency at least 1"
        )
    if not bodies:
        raise UsageError("no request bodies to send")
    target = f"{url.rstrip('/')}/v2/models/{model}/infer"
    total = int(rate * duration_s)
    outcomes: list[Outcome] = []
    in_flight: set[asyncio.Task[None]] = set()
    skipped = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(body: bytes) -> None:
            started = time.perf_counter()
            try:
                async with session.post(
                    target, data=body, headers={"content-type": "application/json"}
                ) as response:
                    payload = await response.read()
                    version = response.headers.get(VERSION_HEADER, "-")
                    error = ""
                    if response.status >= 400:
                        error = f"{response.status}: {payload[:200].decode(errors='replace')}"
                        if problems is not None:
                            problems.append((time.time(), str(response.status)))
                    outcomes.append(
                        Outcome(version, response.status, time.perf_counter() - started, error)
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcomes.append(Outcome("-", 0, time.perf_counter() - started, one_line(exc)))
                if problems is not None:
                    problems.append((time.time(), "no answer"))

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        start = time.perf_counter()
        for index in range(total):
            due = start + index / rate
            while (delay := due - time.perf_counter()) > 0 and not stopped():
                await asyncio.sleep(min(delay, STOP_CHECK_S))
            if stopped():
                break
            if len(in_flight) >= concurrency:
                skipped += 1
                if problems is not None:
                    problems.append((time.time(), "skipped"))
                continue
            task = asyncio.create_task(send(bodies[index % len(bodies)]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)
        ran = time.perf_counter() - start
        elapsed = ran if stopped() else max(ran, duration_s)  # stopped: what was run
    return build_report(outcomes, rate, elapsed, skipped)


class BackgroundLoad:
    """Steady open-loop load in a thread until `stop()`; the report is kept."""

    def __init__(self, url: str, model: str, bodies: list[bytes], rate: float) -> None:
        self._stop = threading.Event()
        self.report: LoadReport | None = None
        self.problems: list[tuple[float, str]] = []  # (wall time, what), as they happen
        self._args = (url, model, bodies, rate)
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        url, model, bodies, rate = self._args
        self.report = asyncio.run(
            run_load(url, model, bodies, rate, 24 * 3600, stop=self._stop, problems=self.problems)
        )

    def start(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def stop(self) -> LoadReport | None:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.report
