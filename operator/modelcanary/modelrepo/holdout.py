"""Champion/challenger on a labelled holdout: each version's metric, the paired difference.

Pure numpy (and the standard library's normal quantiles). Both versions answer the same
holdout samples, so the difference canary - stable is estimated from per-sample pairs:

- accuracy, top-k: each version's accuracy with a Wilson score interval; the difference
  with the Agresti-Min interval for matched proportions (0.5 added to each cell of the
  2x2 table of right/wrong pairs, then Wald), which keeps its coverage when the two
  versions disagree on few samples;
- mae: normal intervals for each mean and for the mean of per-sample differences;
- rmse: the interval of the mean squared error, square-rooted; the difference by the
  delta method on the per-sample squared errors.

Every interval is two-sided at `confidence`. The canary is "worse" when the whole
interval of the difference lies beyond the margin (in the metric's units: 0.01 is one
point of accuracy), so it is worse by more than the margin with at least that confidence;
otherwise "not worse". Below `MIN_SAMPLES` the normal approximations are not trusted and
the result is "not checked".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from modelcanary.errors import UsageError

MetricName = Literal["accuracy", "top-k", "mae", "rmse"]
Decision = Literal["worse", "not worse", "not checked"]
METRICS = "accuracy, top-k:K, mae, rmse"
MIN_SAMPLES = 30
_PLAIN: dict[str, MetricName] = {"accuracy": "accuracy", "mae": "mae", "rmse": "rmse"}


@dataclass(frozen=True)
class Metric:
    """A metric of one output against the holdout's labels."""

    name: MetricName
    k: int = 1

    @classmethod
    def parse(cls, text: str) -> Metric:
        """`accuracy`, `top-k:K`, `mae` or `rmse`."""
        name, _, k = text.partition(":")
        if name in _PLAIN and not k:
            return cls(_PLAIN[name])
        if name == "top-k" and k.isdigit() and int(k) >= 1:
            return cls("top-k", int(k))
        raise UsageError(f"unknown metric {text!r}; use one of: {METRICS}")

    def describe(self) -> str:
        return f"top-k:{self.k}" if self.name == "top-k" else self.name

    @property
    def higher_is_better(self) -> bool:
        return self.name in ("accuracy", "top-k")

    def per_sample(self, output: str, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """One number per sample: 1/0 for a right/wrong class, else the mean (squared) error."""
        if self.higher_is_better:
            return _correct(output, outputs, labels, self.k if self.name == "top-k" else 1)
        if outputs.shape != labels.shape:
            raise UsageError(
                f"output {output!r} has shape {list(outputs.shape)} on the holdout, "
                f"its labels {list(labels.shape)}; {self.name} needs the same shape"
            )
        error = outputs.astype(np.float64) - labels.astype(np.float64)
        per_element = np.abs(error) if self.name == "mae" else error**2
        return np.asarray(per_element.reshape(len(error), -1).mean(axis=1))

    def value(self, per_sample: np.ndarray) -> float:
        mean = float(per_sample.mean())
        return math.sqrt(mean) if self.name == "rmse" else mean


def _correct(output: str, scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise UsageError(
            f"output {output!r} has shape {list(scores.shape)} on the holdout and its labels "
            f"{list(labels.shape)}; accuracy needs (samples, classes) and (samples,)"
        )
    classes = scores.shape[1]
    if k > classes:
        raise UsageError(f"output {output!r} has {classes} classes; top-k:{k} needs at least {k}")
    if (
        labels.dtype.kind not in "iu"
        or labels.min(initial=0) < 0
        or labels.max(initial=0) >= classes
    ):
        raise UsageError(
            f"the labels of output {output!r} must be class indices from 0 to {classes - 1}"
        )
    own = scores[np.arange(len(labels)), labels][:, np.newaxis]
    return np.asarray(((scores > own).sum(axis=1) < k).astype(np.float64))


@dataclass(frozen=True)
class Estimate:
    """A value with a two-sided confidence interval."""

    value: float
    low: float
    high: float

    def describe(self, signed: bool = False) -> str:
        """`0.9810 [0.9620, 0.9907]`; signed puts + before positive numbers."""
        sign = "+" if signed else ""
        return f"{self.value:{sign}.4f} [{self.low:{sign}.4f}, {self.high:{sign}.4f}]"


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise UsageError(f"confidence {confidence} must be between 0 and 1")
    return NormalDist().inv_cdf((1 + confidence) / 2)


def estimate(metric: Metric, per_sample: np.ndarray, confidence: float) -> Estimate:
    """One version's metric with its interval."""
    n, z = len(per_sample), _z(confidence)
    value = metric.value(per_sample)
    if metric.higher_is_better:  # Wilson score interval
        centre = (value + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(value * (1 - value) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return Estimate(value, max(0.0, centre - half), min(1.0, centre + half))
    mean = float(per_sample.mean())
    half = z * float(per_sample.std(ddof=1)) / math.sqrt(n)
    if metric.name == "rmse":
        return Estimate(value, math.sqrt(max(mean - half, 0.0)), math.sqrt(mean + half))
    return Estimate(value, mean - half, mean + half)


def difference(
    metric: Metric, stable: np.ndarray, canary: np.ndarray, confidence: float
) -> Estimate:
    """Canary minus stable, paired sample by sample, with its interval."""
    n, z = len(stable), _z(confidence)
    value = metric.value(canary) - metric.value(stable)
    if metric.higher_is_better:  # Agresti-Min
        gained = float(np.sum((canary == 1) & (stable == 0))) + 0.5
        lost = float(np.sum((canary == 0) & (stable == 1))) + 0.5
        total = n + 2
        centre = (gained - lost) / total
        half = z * math.sqrt(((gained + lost) / total - centre**2) / total)
        return Estimate(value, max(-1.0, centre - half), min(1.0, centre + half))
    if metric.name == "rmse":  # delta method: d sqrt(m) = dm / (2 sqrt(m))
        scale_c = 2 * max(metric.value(canary), 1e-12)
        scale_s = 2 * max(metric.value(stable), 1e-12)
        pairs = canary / scale_c - stable / scale_s
    else:
        pairs = canary - stable
    half = z * float(pairs.std(ddof=1)) / math.sqrt(n)
    return Estimate(value, value - half, value + half)


@dataclass(frozen=True)
class PairedResult:
    """Stable and canary on one output of the same holdout, and the gate's decision."""

    output: str
    metric: str
    samples: int
    confidence: float
    margin: float
    decision: Decision
    stable: Estimate | None = None
    canary: Estimate | None = None
    difference: Estimate | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The decision with the numbers it rests on, in one line."""
        head = f"{self.metric} of {self.output!r} on {self.samples} labelled samples"
        if self.stable is None or self.canary is None or self.difference is None:
            return f"{head}: {self.decision} (fewer than {MIN_SAMPLES} samples)"
        return (
            f"{head}: canary {self.canary.describe()}, stable {self.stable.describe()}; "
            f"canary - stable {self.difference.describe(signed=True)} at "
            f"{self.confidence:.0%}, margin {self.margin:g}: {self.decision}"
        )


def paired(
    output: str,
    metric: Metric,
    labels: np.ndarray,
    stable_outputs: np.ndarray,
    canary_outputs: np.ndarray,
    confidence: float = 0.95,
    margin: float = 0.01,
) -> PairedResult:
    """Each version's metric, the paired difference and whether the canary is worse."""
    if margin < 0:
        raise UsageError(f"margin {margin} must not be negative")
    _z(confidence)  # checks it
    stable = metric.per_sample(output, stable_outputs, labels)
    canary = metric.per_sample(output, canary_outputs, labels)
    if len(labels) < MIN_SAMPLES:
        return PairedResult(
            output, metric.describe(), len(labels), confidence, margin, "not checked"
        )
    diff = difference(metric, stable, canary, confidence)
    worse = diff.high < -margin if metric.higher_is_better else diff.low > margin
    return PairedResult(
        output=output,
        metric=metric.describe(),
        samples=len(labels),
        confidence=confidence,
        margin=margin,
        decision="worse" if worse else "not worse",
        stable=estimate(metric, stable, confidence),
        canary=estimate(metric, canary, confidence),
        difference=diff,
    )
