"""Champion/challenger metrics on a labelled holdout: metrics, intervals, the decision."""

from __future__ import annotations

import numpy as np
import pytest

from modelcanary.errors import UsageError
from modelcanary.modelrepo.holdout import Metric, difference, estimate, paired


@pytest.mark.parametrize(
    ("text", "metric", "described"),
    [
        ("accuracy", Metric("accuracy"), "accuracy"),
        ("top-k:5", Metric("top-k", 5), "top-k:5"),
        ("mae", Metric("mae"), "mae"),
        ("rmse", Metric("rmse"), "rmse"),
    ],
)
def test_metrics_parse(text: str, metric: Metric, described: str) -> None:
    assert Metric.parse(text) == metric and metric.describe() == described


@pytest.mark.parametrize("text", ["f1", "top-k", "top-k:0", "top-k:x", "accuracy:2", ""])
def test_unknown_metrics_name_the_valid_ones(text: str) -> None:
    with pytest.raises(UsageError, match="use one of: accuracy, top-k:K, mae, rmse"):
        Metric.parse(text)


SCORES = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [2.0, 2.0, 0.0]])


@pytest.mark.parametrize(
    ("metric", "labels", "per_sample", "value"),
    [
        (Metric("accuracy"), [0, 1, 2, 0], [1, 1, 1, 1], 1.0),
        (Metric("accuracy"), [1, 2, 0, 1], [0, 0, 0, 1], 0.25),  # a tie counts as right
        (Metric("top-k", 2), [1, 2, 0, 2], [1, 1, 0, 0], 0.5),
        (Metric("top-k", 3), [1, 2, 0, 2], [1, 1, 1, 1], 1.0),
    ],
)
def test_class_metrics_per_sample(
    metric: Metric, labels: list[int], per_sample: list[float], value: float
) -> None:
    got = metric.per_sample("y", SCORES, np.array(labels))
    np.testing.assert_array_equal(got, per_sample)
    assert metric.value(got) == value


@pytest.mark.parametrize(
    ("metric", "per_sample", "value"),
    [(Metric("mae"), [0.5, 2.0], 1.25), (Metric("rmse"), [0.5, 4.0], 1.5)],
)
def test_error_metrics_per_sample(metric: Metric, per_sample: list[float], value: float) -> None:
    outputs, labels = np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[1.0, 1.0], [2.0, -2.0]])
    got = metric.per_sample("y", outputs, labels)
    np.testing.assert_allclose(got, per_sample)
    assert metric.value(got) == pytest.approx(value)


@pytest.mark.parametrize(
    ("metric", "outputs", "labels", "message"),
    [
        (Metric("accuracy"), SCORES, np.array([0, 1, 3, 0]), "must be class indices from 0 to 2"),
        (Metric("accuracy"), SCORES, np.array([0.0, 1, 2, 0]), "must be class indices"),
        (Metric("accuracy"), SCORES, np.array([0, 1]), r"accuracy needs \(samples, classes\)"),
        (Metric("accuracy"), SCORES[:, 0], np.array([0, 1, 2, 0]), "accuracy needs"),
        (Metric("top-k", 4), SCORES, np.array([0, 1, 2, 0]), "has 3 classes; top-k:4 needs"),
        (Metric("mae"), SCORES, np.zeros(4), r"its labels \[4\]; mae needs the same shape"),
    ],
)
def test_labels_that_do_not_fit(
    metric: Metric, outputs: np.ndarray, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        metric.per_sample("y", outputs, labels)


def test_wilson_interval_matches_the_textbook() -> None:
    result = estimate(Metric("accuracy"), np.array([1.0] * 8 + [0.0] * 2), 0.95)
    assert (result.value, round(result.low, 4), round(result.high, 4)) == (0.8, 0.4902, 0.9433)
    perfect = estimate(Metric("accuracy"), np.ones(360), 0.95)
    assert perfect.high == pytest.approx(1.0) and 0.98 < perfect.low < 0.99


def correctness(
    right_right: int, right_wrong: int, wrong_right: int, wrong_wrong: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample correctness of (stable, canary) from the four cells of the 2x2 table."""
    pairs = [(1, 1)] * right_right + [(1, 0)] * right_wrong + [(0, 1)] * wrong_right
    pairs += [(0, 0)] * wrong_wrong
    array = np.array(pairs, dtype=np.float64)
    return array[:, 0], array[:, 1]


def class_outputs(correct: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Ten-class scores that are right exactly where `correct` says."""
    predicted = np.where(correct == 1, labels, (labels + 1) % 10)
    scores = np.zeros((len(labels), 10))
    scores[np.arange(len(labels)), predicted] = 1.0
    return scores


# The digits holdout (360 samples): v1 91.4%, v2 98.1%, v3 97.8%, a version trained with
# 3 and 8 swapped 76%, one with labels shifted by one 0.3% (2x2 tables with v2 as stable,
# or v1 as stable for v1 -> v2).
DIGITS = [
    ("v1 -> v2: an honest improvement", (328, 1, 25, 6), "not worse"),
    ("v2 -> v3: a peer", (348, 5, 4, 3), "not worse"),
    ("v2 -> v5: two classes swapped", (273, 80, 1, 6), "worse"),
    ("v2 -> v4: labels shifted", (1, 352, 0, 7), "worse"),
]


@pytest.mark.parametrize(("case", "table", "decision"), DIGITS, ids=[c[0] for c in DIGITS])
def test_digits_decisions(case: str, table: tuple[int, int, int, int], decision: str) -> None:
    stable_right, canary_right = correctness(*table)
    labels = np.arange(360) % 10
    result = paired(
        "logits",
        Metric("accuracy"),
        labels,
        class_outputs(stable_right, labels),
        class_outputs(canary_right, labels),
    )
    assert result.decision == decision, result
    assert result.stable is not None and result.canary is not None and result.difference is not None
    assert result.difference.value == pytest.approx(result.canary.value - result.stable.value)
    assert result.difference.low < result.difference.value < result.difference.high


@pytest.mark.parametrize(
    ("table", "margin", "decision"),
    [
        ((900, 60, 0, 40), 0.01, "worse"),  # 6 points worse, every discordant pair lost
        ((900, 60, 0, 40), 0.07, "not worse"),  # ...but within a 7-point margin
        ((900, 12, 8, 80), 0.0, "not worse"),  # 0.4 points worse: not significant at n = 1000
        ((900, 0, 60, 40), 0.0, "not worse"),  # better
    ],
)
def test_the_margin_and_the_confidence(
    table: tuple[int, int, int, int], margin: float, decision: str
) -> None:
    stable, canary = correctness(*table)
    labels = np.arange(len(stable)) % 10
    result = paired(
        "y",
        Metric("accuracy"),
        labels,
        class_outputs(stable, labels),
        class_outputs(canary, labels),
        margin=margin,
    )
    assert result.decision == decision


def test_error_metrics_are_worse_when_higher() -> None:
    rng = np.random.default_rng(0)
    labels = rng.standard_normal((500, 2))
    stable = labels + rng.normal(0, 0.1, labels.shape)
    for metric in (Metric("mae"), Metric("rmse")):
        worse = paired("y", metric, labels, stable, labels + rng.normal(0, 0.3, labels.shape))
        better = paired("y", metric, labels, stable, labels + rng.normal(0, 0.05, labels.shape))
        assert (worse.decision, better.decision) == ("worse", "not worse"), metric
        assert worse.difference is not None and worse.difference.low > 0.01


def test_too_few_samples_are_not_checked() -> None:
    labels = np.arange(29) % 10
    scores = class_outputs(np.ones(29), labels)
    result = paired("y", Metric("accuracy"), labels, scores, scores * 0)
    assert result.decision == "not checked" and result.difference is None


@pytest.mark.parametrize(
    ("confidence", "margin", "message"),
    [(1.0, 0.01, "confidence 1.0 must be between 0 and 1"), (0.95, -0.1, "margin -0.1 must not")],
)
def test_bad_confidence_or_margin(confidence: float, margin: float, message: str) -> None:
    labels = np.arange(40) % 10
    scores = class_outputs(np.ones(40), labels)
    with pytest.raises(UsageError, match=message):
        paired("y", Metric("accuracy"), labels, scores, scores, confidence, margin)


def simulated(metric: Metric, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample scores of two correlated versions; canary - stable is -0.005 for
    accuracy (0.895 - 0.9) and 0.1 for mae and rmse."""
    shared, own = rng.random(200), rng.random(200)
    if metric.higher_is_better:
        stable = (shared < 0.9).astype(np.float64)
        return stable, ((shared < 0.85) | (own < 0.3)).astype(np.float64)
    if metric.name == "mae":  # errors with means 1 and 1.1
        stable = rng.exponential(1.0, 200)
        return stable, stable + rng.normal(0.1, 0.5, 200)
    stable, other = rng.chisquare(1, 200), rng.chisquare(1, 200)  # squared errors
    return stable, 1.21 * (stable + other) / 2  # mean 1.21: rmse 1.1 against 1.0


@pytest.mark.parametrize(
    ("metric", "truth"), [(Metric("accuracy"), -0.005), (Metric("mae"), 0.1), (Metric("rmse"), 0.1)]
)
def test_intervals_of_the_difference_cover_the_truth(metric: Metric, truth: float) -> None:
    """Over 2,000 simulated holdouts of 200 samples, the 95% interval of canary - stable
    holds the true difference about 95% of the time."""
    rng = np.random.default_rng(42)
    covered = 0
    for _ in range(2000):
        interval = difference(metric, *simulated(metric, rng), 0.95)
        covered += interval.low <= truth <= interval.high
    assert 0.93 <= covered / 2000 <= 0.97, covered
