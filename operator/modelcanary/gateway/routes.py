"""The models behind the gateway: each one's versions, upstreams and current split.

A route keeps two splits: `table`, the one asked for (the admin API sets it), and
`serving`, the one requests follow: the same, except that a version whose upstream is
not ready (modelcanary.gateway.readiness) has its share spread over the ready versions
that have traffic, until it is ready again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from modelcanary.gateway.config import ModelRoute
from modelcanary.gateway.upstream import Upstream, UpstreamRefused, UpstreamTimeout
from modelcanary.gateway.weights import WeightTable

READY_TIMEOUT_S = 1.0  # a version whose upstream does not answer /ready this fast is unready


class Route:
    """One model: its versions' upstreams and the current split (replaced whole)."""

    def __init__(self, name: str, config: ModelRoute, table: WeightTable) -> None:
        self.name, self.config = name, config
        self.unready: frozenset[str] = frozenset()
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

    def version_url(self, version: str, suffix: str = "") -> str:
        """The upstream's URL of one version, e.g. suffix `/infer` or `/ready`."""
        return f"{self.config.upstreams[version]}/v2/models/{self.name}/versions/{version}{suffix}"

    def view(self) -> dict[str, Any]:
        """What the admin API shows of the route."""
        return {
            "model": self.name,
            "stable": self.config.stable,
            "weights": self.table.as_dict(),
            "serving": self.serving.as_dict(),
            "unready": sorted(self.unready),
            "upstreams": self.config.upstreams,
        }


def unknown_model(routes: dict[str, Route], model: str) -> str:
    return f"unknown model {model!r}; this gateway routes: {', '.join(routes)}"


async def unready(
    upstream: Upstream, route: Route, table: WeightTable | None = None,
    versions: Collection[str] | None = None,
) -> list[str]:  # fmt: skip
    """Why the versions that receive traffic under `table` (default: the current split;
    only those among `versions`, if given) are not all ready; empty when they are. Each
    upstream has READY_TIMEOUT_S to answer: a hung one is unready, not waited for."""
    problems = []
    for version, weight in (table or route.table).weights:
        if weight == 0 or (versions is not None and version not in versions):
            continue
        url = route.version_url(version, "/ready")
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                response = await upstream.request("GET", url, None, {})
            if response.status != 200:
                problems.append(
                    f"{route.name} version {version} is not ready ({url}: {response.status})"
                )
        except (UpstreamRefused, UpstreamTimeout) as exc:
            problems.append(f"{route.name} version {version} is unreachable at {url}: {exc}")
        except TimeoutError:
            problems.append(
                f"{route.name} version {version} at {url} did not answer within "
                f"{READY_TIMEOUT_S:g} s"
            )
    return problems
