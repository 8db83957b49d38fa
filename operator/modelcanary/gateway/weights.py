"""A model's traffic split: {version: percent}. Pure; replaced whole, never mutated.

A request reads the table once, so a change is atomic from every request's point of view.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from modelcanary.errors import UsageError


@dataclass(frozen=True)
class WeightTable:
    """Percent of traffic per version; the percents are integers that sum to 100."""

    weights: tuple[tuple[str, int], ...]
    _bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _versions: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        routed = [(v, w) for v, w in self.weights if w > 0]
        bounds, total = [], 0
        for _, weight in routed:
            total += weight
            bounds.append(total)
        object.__setattr__(self, "_bounds", tuple(bounds))
        object.__setattr__(self, "_versions", tuple(v for v, _ in routed))

    @classmethod
    def parse(cls, weights: Mapping[str, object], known: Iterable[str]) -> WeightTable:
        """Validate a requested split; the error names the offending version or the sum.

        Known versions the split does not name get 0%."""
        known_versions = [str(v) for v in known]
        if not weights:
            raise UsageError("weights are empty; give a percent per version, summing to 100")
        table: list[tuple[str, int]] = []
        for version, value in weights.items():
            version = str(version)
            if version not in known_versions:
                raise UsageError(
                    f"version {version!r} is not served by this gateway "
                    f"(versions: {', '.join(known_versions)})"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"weight of version {version!r} must be a number, not {value!r}")
            if not math.isfinite(value) or value != int(value) or not 0 <= value <= 100:
                raise UsageError(
                    f"weight of version {version!r} must be a whole percent from 0 to 100, "
                    f"not {value!r}"
                )
            table.append((version, int(value)))
        named = {v for v, _ in table}
        table.extend((v, 0) for v in known_versions if v not in named)  # unnamed: no traffic
        total = sum(w for _, w in table)
        if total != 100:
            raise UsageError(f"weights must sum to 100, not {total} ({_describe(table)})")
        return cls(tuple(sorted(table, key=lambda item: _version_key(item[0]))))

    def as_dict(self) -> dict[str, int]:
        return dict(self.weights)

    def percent(self, version: str) -> int:
        return dict(self.weights).get(version, 0)

    def choose(self, draw: float) -> str:
        """The version for a uniform draw in [0, 1)."""
        index = bisect.bisect_right(self._bounds, draw * 100)
        return self._versions[min(index, len(self._versions) - 1)]

    def describe(self) -> str:
        return _describe(self.weights)

    def without(self, versions: Collection[str]) -> WeightTable:
        """This split with `versions` given no traffic and their share spread over the
        other versions that have some, in proportion (whole percents, largest remainder).
        Unchanged when none of `versions` has traffic, or no other version has any: traffic
        never moves to a version the split gives 0% (a rolled-back canary)."""
        kept = [(v, 0 if v in versions else w) for v, w in self.weights]
        total = sum(w for _, w in kept)
        if total in (0, 100):
            return self
        exact = [(v, w * 100 / total) for v, w in kept]
        whole = {v: int(x) for v, x in exact}
        order = sorted(exact, key=lambda item: item[1] - int(item[1]), reverse=True)
        for v, _ in order[: 100 - sum(whole.values())]:
            whole[v] += 1
        return WeightTable(tuple((v, whole[v]) for v, _ in self.weights))


def _describe(table: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{v}={w}" for v, w in table)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)
