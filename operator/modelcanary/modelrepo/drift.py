"""How far inputs have drifted from a version's reference profile. Pure numpy.

The profile stores, per feature, quantile bin edges and the share of reference samples
below, at and between them (so discrete values keep their point masses). New samples score
by the population stability index (PSI) over the bins either side occupies, each side's
shares smoothed by half a sample per bin. Two samples of one distribution show a PSI of
about (bins - 1) * (1/n + 1/m) from sampling alone (n and m samples; the chi-square
approximation), reported beside it as the noise: 32 samples against 360 make about 0.3
with ten bins, 1,000 against 1,000 about 0.02.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelcanary.errors import UsageError

PROFILE_BINS = 10
# Inputs with more elements per sample are profiled by their per-sample mean and std.
MAX_ELEMENT_FEATURES = 256
# Pseudo-samples added to every bin before the PSI, so that empty bins score finitely.
SMOOTHING = 0.5


@dataclass(frozen=True)
class FeatureProfile:
    """One feature of the reference: bin edges and the share of samples per bin."""

    name: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]  # 2 * len(edges) + 1: below, at and between edges
    mean: float
    std: float


@dataclass(frozen=True)
class InputProfile:
    """The reference profile of a version's inputs, stored as `profile.json`."""

    samples: int
    modes: dict[str, str]  # input name -> "elements" (one feature each) or "summary"
    features: tuple[FeatureProfile, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputProfile:
        features = tuple(
            FeatureProfile(
                name=str(f["name"]),
                edges=tuple(float(e) for e in f["edges"]),
                shares=tuple(float(s) for s in f["shares"]),
                mean=float(f["mean"]),
                std=float(f["std"]),
            )
            for f in data["features"]
        )
        return cls(
            int(data["samples"]), {str(k): str(v) for k, v in data["modes"].items()}, features
        )


def feature_columns(
    inputs: Mapping[str, np.ndarray], modes: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """One column of values per feature: `NAME[i]` per element, or `NAME.mean`/`NAME.std`."""
    columns: dict[str, np.ndarray] = {}
    for name, mode in modes.items():
        if name not in inputs:
            raise UsageError(f"the samples have no input {name!r}")
        values = inputs[name].reshape(len(inputs[name]), -1).astype(np.float64)
        if mode == "summary":
            columns[f"{name}.mean"] = values.mean(axis=1)
            columns[f"{name}.std"] = values.std(axis=1)
            continue
        for index in range(values.shape[1]):
            columns[f"{name}[{index}]"] = values[:, index]
    return columns


def profile_inputs(
    inputs: Mapping[str, np.ndarray], variable: frozenset[str] = frozenset()
) -> InputProfile:
    """The reference profile of samples; inputs in `variable` (or large) are summarised."""
    modes = {
        name: "summary" if name in variable or array[0].size > MAX_ELEMENT_FEATURES else "elements"
        for name, array in inputs.items()
    }
    features = []
    for name, column in feature_columns(inputs, modes).items():
        edges = np.unique(np.quantile(column, np.linspace(0, 1, PROFILE_BINS + 1)[1:-1]))
        features.append(
            FeatureProfile(
                name=name,
                edges=tuple(float(e) for e in edges),
                shares=tuple(float(s) for s in _bin_shares(column, edges)),
                mean=float(column.mean()),
                std=float(column.std()),
            )
        )
    return InputProfile(len(next(iter(inputs.values()))), modes, tuple(features))


def _bin_shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values below, at and between the edges (point masses get their own bin)."""
    index = np.searchsorted(edges, column, "left") + np.searchsorted(edges, column, "right")
    return np.bincount(index, minlength=2 * len(edges) + 1) / max(len(column), 1)


def psi(reference: np.ndarray, reference_count: int, current: np.ndarray, count: int) -> float:
    """Population stability index between two bin-share vectors of so many samples each,
    over the bins either side occupies."""
    occupied = (np.asarray(reference) > 0) | (np.asarray(current) > 0)
    p = _smoothed(np.asarray(reference)[occupied], reference_count)
    q = _smoothed(np.asarray(current)[occupied], count)
    return float(np.sum((q - p) * np.log(q / p)))


def _smoothed(shares: np.ndarray, count: int) -> np.ndarray:
    counts = np.asarray(shares, dtype=np.float64) * count
    return np.asarray((counts + SMOOTHING) / (count + SMOOTHING * len(counts)))


def psi_noise(bins: int, reference_count: int, count: int) -> float:
    """The PSI two samples of one distribution show on average, from sampling alone."""
    return (bins - 1) * (1 / max(count, 1) + 1 / max(reference_count, 1))


@dataclass(frozen=True)
class FeatureDrift:
    """How far one feature moved from the reference."""

    name: str
    psi: float
    noise: float  # the PSI expected from sampling alone
    reference_mean: float
    mean: float


@dataclass(frozen=True)
class DriftReport:
    """Every feature's PSI against the reference, the furthest above its noise first."""

    samples: int
    reference_samples: int
    features: tuple[FeatureDrift, ...]

    def worst(self, count: int = 5) -> tuple[FeatureDrift, ...]:
        return self.features[:count]

    def to_json(self, count: int = 5) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "reference_samples": self.reference_samples,
            "max_psi": max((f.psi for f in self.features), default=0.0),
            "worst": [asdict(f) for f in self.worst(count)],
        }


def drift(profile: InputProfile, inputs: Mapping[str, np.ndarray]) -> DriftReport:
    """Score samples against a reference profile, feature by feature."""
    columns = feature_columns(inputs, profile.modes)
    missing = [f.name for f in profile.features if f.name not in columns]
    if missing:
        raise UsageError(
            f"the samples have no feature {missing[0]!r} of the reference profile "
            "(a different number of elements per sample?)"
        )
    scores = []
    for feature in profile.features:
        column = columns[feature.name]
        reference = np.array(feature.shares)
        current = _bin_shares(column, np.array(feature.edges))
        score = psi(reference, profile.samples, current, len(column))
        noise = psi_noise(int(np.count_nonzero(reference)), profile.samples, len(column))
        mean = float(column.mean()) if len(column) else 0.0
        scores.append(FeatureDrift(feature.name, score, noise, feature.mean, mean))
    scores.sort(key=lambda f: f.noise - f.psi)
    samples = len(next(iter(inputs.values()))) if inputs else 0
    return DriftReport(samples, profile.samples, tuple(scores))
