"""A version's replicas behind the gateway: the processes that serve it (one URL each),
which of them are down, and the next one a request goes to.

Requests go round-robin over the replicas that are not down; a replica is down from a
refused request or a failed readiness probe until a probe finds it ready again
(modelcanary.gateway.readiness). A version is unready only when all its replicas are
down; then requests still go round-robin over all of them (the route has nothing better).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


class Replicas:
    """The URLs of one version's replicas (at least one) and which are down."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("a version needs at least one replica")
        self.urls = tuple(urls)
        self.down: frozenset[str] = frozenset()
        self._turn = 0

    def pick(self) -> str:
        """The replica the next request goes to."""
        ready = [url for url in self.urls if url not in self.down] or self.urls
        url = ready[self._turn % len(ready)]
        self._turn += 1
        return url

    def of(self, url: str) -> str | None:
        """The replica a request URL (one of `pick`'s with a path) went to."""
        return next((base for base in self.urls if url == base or url.startswith(base + "/")), None)

    def set_down(self, down: Collection[str]) -> tuple[list[str], list[str]]:
        """Record which replicas are down; the ones that went down and came back."""
        now = frozenset(url for url in down if url in self.urls)
        lost, back = sorted(now - self.down), sorted(self.down - now)
        self.down = now
        return lost, back

    @property
    def all_down(self) -> bool:
        return self.down == frozenset(self.urls)
