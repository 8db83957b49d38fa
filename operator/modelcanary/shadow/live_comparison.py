"""The live comparison (the Comparator): stable's answers to mirrored requests against the
canary's.

It runs inside the gateway process, as a few asyncio workers on the gateway's event loop
fed by a bounded `asyncio.Queue`, and its metrics are on the gateway's /metrics. Why
there: the gateway already holds each request's body and stable's answer, so mirroring is
one `put_nowait` of references after the user has been answered (no copy, no socket, no
second process to supervise, scrape and restart), and the canary's upstream is the
route's own. A full queue drops the request and counts it (`queue_full`): the user's path
never waits for the comparator. The workers send each input pinned to the canary with
the probe header (`x-modelcanary-probe: shadow`), so that no gateway counts it as user
traffic, compare the answers by the kinds in the canary's manifest
(modelcanary.shadow.pairs) and score the inputs against stable's reference profile.
A request that cannot be compared is counted by reason and dropped; no payload stops a
worker.

What to compare is set at run time through the gateway's admin API (PUT and DELETE
/admin/shadow/{model}, see modelcanary.gateway.admin), like the traffic split.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelcanary import metrics_contract
from modelcanary.errors import UsageError, one_line
from modelcanary.http.upstream import Upstream, UpstreamRefused, UpstreamTimeout
from modelcanary.shadow.catalog import version_pair
from modelcanary.shadow.metrics import ShadowMetrics
from modelcanary.shadow.pairs import (
    DriftWindow,
    Incomparable,
    Tolerance,
    VersionPair,
    compare_answers,
)
from modelcanary.shadow.payload import Unparseable, tensors
from modelcanary.shadow.settings import ShadowSettings

PROBE = {metrics_contract.PROBE_HEADER: "shadow"}


@dataclass(frozen=True)
class ShadowTarget:
    """One model's comparison: `percent` of what `stable` answers, sent to `canary`."""

    model: str
    stable: str
    canary: str
    percent: float
    canary_url: str  # the canary's OIP infer URL
    versions: VersionPair
    tolerance: Tolerance  # of numeric outputs
    window: DriftWindow | None  # None: stable has no reference profile

    def view(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stable": self.stable,
            "canary": self.canary,
            "percent": self.percent,
            "kinds": dict(self.versions.kinds),
            "atol": self.tolerance.atol,
            "rtol": self.tolerance.rtol,
            "drift": self.window is not None,
        }


@dataclass(frozen=True)
class Mirrored:
    """A request stable answered with 200: the input, its headers and stable's answer."""

    target: ShadowTarget
    body: bytes
    headers: dict[str, str]
    answer: bytes
    answer_headers: dict[str, str]


class Comparator:
    """The targets, the bounded queue and its workers. `draw` returns a uniform number in
    [0, 1) per offered request."""

    def __init__(
        self,
        settings: ShadowSettings,
        metrics: ShadowMetrics,
        draw: Callable[[], float] = random.random,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings, self.metrics, self.draw, self.say = settings, metrics, draw, say
        self.targets: dict[str, ShadowTarget] = {}
        self.queue: asyncio.Queue[Mirrored] = asyncio.Queue(settings.queue)
        self.upstream = Upstream(settings.timeout_s, settings.workers)
        self.workers: list[asyncio.Task[None]] = []

    # -- configuration (the admin API) ---------------------------------------------------

    def configure(
        self,
        model: str,
        stable: str,
        canary: str,
        percent: float,
        canary_url: str,
        versions: VersionPair | None = None,
        atol: float | None = None,
        rtol: float | None = None,
    ) -> ShadowTarget:
        """Compare `percent` of stable's requests with the canary; UsageError if the
        repository cannot say how (no repository, no manifest, a modified profile).
        `versions`: what the manifests say, read by the caller (else from the repository);
        `atol`, `rtol`: the numeric tolerance (unset: from the canary's export's)."""
        if versions is None:
            repo = self.settings.repository
            if repo is None:
                raise UsageError(
                    "this gateway has no model repository to read output kinds from "
                    "(config shadow.repository)"
                )
            versions = version_pair(repo, model, stable, canary)
        s = self.settings
        window = (
            None
            if versions.profile is None
            else DriftWindow(versions.profile, s.drift_window, s.drift_every)
        )
        self.remove(model)
        tolerance = Tolerance.of(versions, atol, rtol)
        target = ShadowTarget(
            model, stable, canary, percent, canary_url, versions, tolerance, window
        )
        self.targets[model] = target
        self.metrics.started(model, canary, versions.kinds)
        return target

    def remove(self, model: str) -> ShadowTarget | None:
        target = self.targets.pop(model, None)
        if target is not None:
            self.metrics.forget(model, target.canary)
        return target

    # -- the user's path -------------------------------------------------------------------

    def offer(
        self,
        model: str,
        version: str,
        body: bytes,
        headers: dict[str, str],
        answer: bytes,
        answer_headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Mirror a request `version` answered with 200, if it is a target's stable and the
        draw falls in its share; never waits."""
        target = self.targets.get(model)
        if target is None or version != target.stable or self.draw() * 100 >= target.percent:
            return
        passed = {k.decode("latin-1"): v.decode("latin-1") for k, v in answer_headers}
        try:
            self.queue.put_nowait(Mirrored(target, body, headers, answer, passed))
        except asyncio.QueueFull:
            self.metrics.drop(model, target.canary, "queue_full")

    # -- the workers -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers on the running loop, with an empty queue: a gateway restarted
        by the supervisor runs on a new loop, which the last one's queue is not bound to."""
        self.queue = asyncio.Queue(self.settings.queue)
        await self.upstream.open()
        self.workers = [asyncio.create_task(self._work()) for _ in range(self.settings.workers)]

    async def stop(self) -> None:
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.workers = []
        await self.upstream.close()

    async def _work(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                reason = await self.compare(item)
            except Exception as exc:  # a bug must cost one comparison, never the worker
                if self.say is not None:
                    self.say(f"comparator: {item.target.model}: {one_line(exc)}")
                reason = "incomparable"
            if reason is not None:
                self.metrics.drop(item.target.model, item.target.canary, reason)

    async def compare(self, item: Mirrored) -> str | None:
        """Send the input to the canary and compare; the reason it was dropped, or None."""
        target = item.target
        try:
            inputs = tensors(item.body, item.headers, "inputs")
            stable = tensors(item.answer, item.answer_headers, "outputs")
        except Unparseable:
            return "unparseable"
        try:
            response = await self.upstream.request(
                "POST", target.canary_url, item.body, {**item.headers, **PROBE}
            )
        except (UpstreamRefused, UpstreamTimeout):
            return "canary_failed"
        if response.status != 200:
            return "canary_failed"
        passed = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers}
        try:
            canary = tensors(response.body, passed, "outputs")
        except Unparseable:
            return "unparseable"
        if self.targets.get(target.model) is not target:
            return None  # reconfigured meanwhile: the pair belongs to no comparison
        try:
            outputs = compare_answers(stable, canary, target.versions, target.tolerance)
            report = target.window.add(inputs) if target.window is not None else None
        except Incomparable:
            return "incomparable"
        self.metrics.compared(target.model, target.canary, outputs)
        if report is not None:
            self.metrics.drifted(target.model, target.canary, report)
        return None
