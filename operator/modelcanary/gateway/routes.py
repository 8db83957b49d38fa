"""The models behind the gateway: each one's versions, upstreams and current split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelcanary.gateway.config import ModelRoute
from modelcanary.gateway.upstream import Upstream, UpstreamRefused, UpstreamTimeout
from modelcanary.gateway.weights import WeightTable


@dataclass
class Route:
    """One model: its versions' upstreams and the current split (replaced whole)."""

    name: str
    config: ModelRoute
    table: WeightTable

    def version_url(self, version: str, suffix: str = "") -> str:
        """The upstream's URL of one version, e.g. suffix `/infer` or `/ready`."""
        return f"{self.config.upstreams[version]}/v2/models/{self.name}/versions/{version}{suffix}"

    def view(self) -> dict[str, Any]:
        """What the admin API shows of the route."""
        return {
            "model": self.name,
            "stable": self.config.stable,
            "weights": self.table.as_dict(),
            "upstreams": self.config.upstreams,
            "retry_on_refused": self.config.retry_on_refused,
        }


def unknown_model(routes: dict[str, Route], model: str) -> str:
    return f"unknown model {model!r}; this gateway routes: {', '.join(routes)}"


async def unready(upstream: Upstream, route: Route, table: WeightTable | None = None) -> list[str]:
    """Why the versions that receive traffic under `table` (default: the current split)
    are not all ready; empty when they are."""
    problems = []
    for version, weight in (table or route.table).weights:
        if weight == 0:
            continue
        url = route.version_url(version, "/ready")
        try:
            response = await upstream.request("GET", url, None, {})
            if response.status != 200:
                problems.append(
                    f"{route.name} version {version} is not ready ({url}: {response.status})"
                )
        except (UpstreamRefused, UpstreamTimeout) as exc:
            problems.append(f"{route.name} version {version} is unreachable at {url}: {exc}")
    return problems
