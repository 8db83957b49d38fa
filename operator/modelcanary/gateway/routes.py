"""The models behind the gateway: each one's versions, upstreams and current split.

A route keeps two splits: `table`, the one asked for (the admin API sets it), and
`serving`, the one requests follow: the same, except that a version whose upstream is
not ready (modelcanary.gateway.readiness) has its share spread over the ready versions
that have traffic, until it is ready again. A version served by several replicas
(modelcanary.gateway.replicas) is ready while any of them is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from modelcanary.gateway.config import ModelRoute
from modelcanary.gateway.replicas import Replicas
from modelcanary.gateway.weights import WeightTable
from modelcanary.http.upstream import Upstream, UpstreamRefused, UpstreamTimeout

READY_TIMEOUT_S = 1.0  # a version whose upstream does not answer /ready this fast is unready


class Route:
    """One model: its versions' upstreams and the current split (replaced whole)."""

    def __init__(self, name: str, config: ModelRoute, table: WeightTable) -> None:
        self.name, self.config = name, config
        self.unready: frozenset[str] = frozenset()
        self.replicas = {v: Replicas(config.replica_urls(v)) for v in config.upstreams}
        self._table = self.serving = table

    @property
    def table(self) -> WeightTable:
        """The split asked for."""
        return self._table

    @table.setter
    def table(self, table: WeightTable) -> None:
        self._table = table
        self.serving = table.without(self.unready)

    def set_unready(self, versions: Collection[str]) -> bool:
        """Record which versions are not ready; True when that changed."""
        unready = frozenset(versions)
        if unready == self.unready:
            return False
        self.unready = unready
        self.serving = self._table.without(unready)
        return True

    def version_url(self, version: str, suffix: str = "", replica: str | None = None) -> str:
        """The upstream's URL of one version, e.g. suffix `/infer` or `/ready`: on the given
        replica, else on the next one (round-robin over the ready ones)."""
        base = replica or self.replicas[version].pick()
        return f"{base}/v2/models/{self.name}/versions/{version}{suffix}"

    def view(self) -> dict[str, Any]:
        """What the admin API shows of the route."""
        return {
            "model": self.name,
            "stable": self.config.stable,
            "weights": self.table.as_dict(),
            "replicas": {
                v: {"urls": r.urls, "down": sorted(r.down)} for v, r in self.replicas.items()
            },
            "serving": self.serving.as_dict(),
            "unready": sorted(self.unready),
            "upstreams": self.config.upstreams,
        }


def unknown_model(routes: dict[str, Route], model: str) -> str:
    return f"unknown model {model!r}; this gateway routes: {', '.join(routes)}"


async def unready(
    upstream: Upstream,
    route: Route,
    table: WeightTable | None = None,
    versions: Collection[str] | None = None,
) -> list[str]:
    """Why the versions that receive traffic under `table` (default: the current split;
    only those among `versions`, if given) are not all ready; empty when they are. A
    version is ready when any of its replicas is. Each replica has READY_TIMEOUT_S to
    answer: a hung one is unready, not waited for."""
    problems = []
    for version, weight in (table or route.table).weights:
        if weight == 0 or (versions is not None and version not in versions):
            continue
        urls = [route.version_url(version, "/ready", r) for r in route.replicas[version].urls]
        found = await asyncio.gather(*(_ready_problem(upstream, route, version, u) for u in urls))
        if all(found):
            problems.append("; ".join(found))
    return problems


async def _ready_problem(upstream: Upstream, route: Route, version: str, url: str) -> str:
    """Why one replica of the version is not ready ('' when it is)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            response = await upstream.request("GET", url, None, {})
        if response.status != 200:
            return f"{route.name} version {version} is not ready ({url}: {response.status})"
    except (UpstreamRefused, UpstreamTimeout) as exc:
        return f"{route.name} version {version} is unreachable at {url}: {exc}"
    except TimeoutError:
        return (
            f"{route.name} version {version} at {url} did not answer within {READY_TIMEOUT_S:g} s"
        )
    return ""
