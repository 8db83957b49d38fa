"""How two versions' answers differ, and how far inputs have drifted from a reference.

Pure numpy, shared by `modelcanary compare` (offline) and the live shadow comparison.
Outputs are compared by the kind declared at export:

- classification: the last axis holds class scores (logits or probabilities); top-1
  agreement, the mean confidence of each version and its shift, and the Jensen-Shannon
  divergence between the predicted-class histograms and between the confidence histograms;
- numeric: the share of elements within `|b - a| <= atol + rtol * |a|`, and the max and
  mean absolute difference.

Input drift: a reference profile stores per feature quantile bin edges and the share of
reference samples in each bin; new samples score by the population stability index (PSI)
over those bins, each side's shares smoothed by half a sample per bin. Two samples of one
distribution show a PSI of about (bins - 1) * (1/n + 1/m) from sampling alone (n and m
samples; the chi-square approximation), which is reported beside it as the noise: 32
samples against 360 make about 0.3 with ten bins, 1,000 against 1,000 about 0.02.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from modelcanary.errors import UsageError

OutputKind = Literal["classification", "numeric"]
KINDS: tuple[OutputKind, ...] = ("classification", "numeric")
CONFIDENCE_BINS = 10
PROFILE_BINS = 10
# Inputs with more elements per sample are profiled by their per-sample mean and std.
MAX_ELEMENT_FEATURES = 256
# Pseudo-samples added to every bin before the PSI, so that empty bins score finitely.
SMOOTHING = 0.5


@dataclass(frozen=True)
class ClassificationComparison:
    """Two versions' class scores on the same samples."""

    output: str
    samples: int
    agreement: float
    confidence_a: float
    confidence_b: float
    classes_a: tuple[int, ...]
    classes_b: tuple[int, ...]
    class_divergence: float
    confidence_divergence: float
    kind: OutputKind = "classification"

    @property
    def confidence_shift(self) -> float:
        return self.confidence_b - self.confidence_a

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "confidence_shift": self.confidence_shift}


@dataclass(frozen=True)
class NumericComparison:
    """Two versions' numeric outputs on the same samples."""

    output: str
    samples: int
    atol: float
    rtol: float
    within: float
    max_abs_diff: float
    mean_abs_diff: float
    kind: OutputKind = "numeric"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


OutputComparison = ClassificationComparison | NumericComparison


def check_kind(text: str, where: str) -> OutputKind:
    """The output kind named by `text`, or a UsageError naming the valid ones."""
    for kind in KINDS:
        if text == kind:
            return kind
    raise UsageError(f"{where}: unknown output kind {text!r}; use {' or '.join(KINDS)}")


def class_scores(output: str, scores: np.ndarray) -> np.ndarray:
    """Scores as (samples, classes): the last axis holds the classes, at least two."""
    if scores.ndim < 2 or scores.shape[-1] < 2:
        raise UsageError(
            f"output {output!r} has shape {list(scores.shape)}: a classification output needs "
            "a last axis of at least 2 class scores"
        )
    return scores.reshape(-1, scores.shape[-1]).astype(np.float64)


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows of class probabilities: kept if every row already is one, else softmax."""
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3):
        return scores
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def confidence_histogram(confidence: np.ndarray, bins: int = CONFIDENCE_BINS) -> np.ndarray:
    """Counts of top-1 confidences in `bins` equal bins over [0, 1]."""
    counts, _ = np.histogram(np.clip(confidence, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    return counts


def js_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, from 0 to 1) between two histograms' shares."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def compare_classification(output: str, a: np.ndarray, b: np.ndarray) -> ClassificationComparison:
    """Top-1 agreement, confidences and histogram divergences of two class-score arrays."""
    _same_shape(output, a, b)
    pa, pb = probabilities(class_scores(output, a)), probabilities(class_scores(output, b))
    top_a, top_b = pa.argmax(axis=1), pb.argmax(axis=1)
    conf_a, conf_b = pa.max(axis=1), pb.max(axis=1)
    classes = pa.shape[1]
    hist_a = np.bincount(top_a, minlength=classes)
    hist_b = np.bincount(top_b, minlength=classes)
    return ClassificationComparison(
        output=output,
        samples=len(top_a),
        agreement=float(np.mean(top_a == top_b)) if len(top_a) else 0.0,
        confidence_a=float(conf_a.mean()) if len(conf_a) else 0.0,
        confidence_b=float(conf_b.mean()) if len(conf_b) else 0.0,
        classes_a=tuple(int(c) for c in hist_a),
        classes_b=tuple(int(c) for c in hist_b),
        class_divergence=js_divergence(hist_a, hist_b),
        confidence_divergence=js_divergence(
            confidence_histogram(conf_a), confidence_histogram(conf_b)
        ),
    )


def compare_numeric(
    output: str, a: np.ndarray, b: np.ndarray, atol: float, rtol: float
) -> NumericComparison:
    """Share of elements of b within tolerance of a, and the max and mean difference."""
    _same_shape(output, a, b)
    x, y = a.astype(np.float64), b.astype(np.float64)
    diff = np.abs(y - x)
    return NumericComparison(
        output=output,
        samples=len(a),
        atol=atol,
        rtol=rtol,
        within=float(np.mean(np.isclose(y, x, atol=atol, rtol=rtol))) if diff.size else 1.0,
        max_abs_diff=float(diff.max(initial=0.0)),
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
    )


def compare_output(
    output: str, kind: OutputKind, a: np.ndarray, b: np.ndarray, atol: float, rtol: float
) -> OutputComparison:
    """Compare one output of versions A and B by its kind."""
    if kind == "classification":
        return compare_classification(output, a, b)
    return compare_numeric(output, a, b, atol, rtol)


def _same_shape(output: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise UsageError(
            f"output {output!r}: version A gives shape {list(a.shape)}, B {list(b.shape)}"
        )


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
