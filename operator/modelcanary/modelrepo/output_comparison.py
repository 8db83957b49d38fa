"""How two versions' answers differ: one output of A and B compared by its kind.

Pure numpy, shared by `modelcanary compare` (modelrepo.offline_comparison), the live shadow
comparison (shadow.pairs, shadow.live_comparison) and `--quantize int8` (modelrepo.quantize).
Outputs are compared by the kind declared at export:

- classification: the last axis holds class scores (logits or probabilities); top-1
  agreement, the mean confidence of each version and its shift, and the Jensen-Shannon
  divergence between the predicted-class histograms and between the confidence histograms;
- numeric: the share of elements within `|b - a| <= atol + rtol * |a|`, and the max and
  mean absolute difference.

How far inputs drifted from a version's reference is in `drift`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from modelcanary.errors import UsageError

OutputKind = Literal["classification", "numeric"]
KINDS: tuple[OutputKind, ...] = ("classification", "numeric")
CONFIDENCE_BINS = 10


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


def samples_within(output: str, a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> int:
    """How many samples (first-axis rows) of b have every element within tolerance of a."""
    _same_shape(output, a, b)
    if a.ndim == 0:
        return int(np.isclose(b, a, atol=atol, rtol=rtol))
    close = np.isclose(b.astype(np.float64), a.astype(np.float64), atol=atol, rtol=rtol)
    rows = close.reshape(a.shape[0], int(np.prod(a.shape[1:])))
    return int(np.count_nonzero(rows.all(axis=1)))


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
