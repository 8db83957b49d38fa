"""The comparison core: outputs by kind and histogram divergences. Table-driven."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelcanary.errors import UsageError
from modelcanary.modelrepo.output_comparison import (
    ClassificationComparison,
    check_kind,
    compare_classification,
    compare_numeric,
    compare_output,
    js_divergence,
    probabilities,
)

RNG = np.random.default_rng(0)
LOGITS = RNG.standard_normal((200, 10)) * 3


def onehot(classes: list[int], width: int = 3, hot: float = 5.0) -> np.ndarray:
    scores = np.zeros((len(classes), width))
    scores[np.arange(len(classes)), classes] = hot
    return scores


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        (np.array([[0.0, 0.0]]), [[0.5, 0.5]]),  # logits: softmax
        (np.array([[np.log(3.0), 0.0]]), [[0.75, 0.25]]),
        (np.array([[1000.0, 0.0]]), [[1.0, 0.0]]),  # no overflow
        (np.array([[0.2, 0.8], [1.0, 0.0]]), [[0.2, 0.8], [1.0, 0.0]]),  # already probabilities
        (np.array([[0.2, 0.7]]), [[0.37754, 0.62246]]),  # sums to 0.9: treated as logits
    ],
)
def test_probabilities_softmax_only_what_is_not_a_distribution(
    scores: np.ndarray, expected: list[list[float]]
) -> None:
    np.testing.assert_allclose(probabilities(scores), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("a", "b", "agreement", "classes_a", "classes_b"),
    [
        ([0, 1, 2, 0], [0, 1, 2, 0], 1.0, (2, 1, 1), (2, 1, 1)),
        ([0, 1, 2, 0], [0, 1, 2, 1], 0.75, (2, 1, 1), (1, 2, 1)),
        ([0, 1, 2], [1, 2, 0], 0.0, (1, 1, 1), (1, 1, 1)),  # label shift: same histogram
        ([0, 0, 0, 0], [2, 2, 2, 2], 0.0, (4, 0, 0), (0, 0, 4)),
    ],
)
def test_top1_agreement_and_class_histograms(
    a: list[int],
    b: list[int],
    agreement: float,
    classes_a: tuple[int, ...],
    classes_b: tuple[int, ...],
) -> None:
    result = compare_classification("y", onehot(a), onehot(b))
    assert result.samples == len(a)
    assert result.agreement == agreement
    assert (result.classes_a, result.classes_b) == (classes_a, classes_b)


def test_a_label_shift_disagrees_everywhere_while_histograms_look_alike() -> None:
    """The label-bug version of the issue: 0% agreement, near-identical histograms."""
    shifted = np.roll(LOGITS, 1, axis=1)  # class c's score moves to class c + 1
    result = compare_classification("logits", LOGITS, shifted)
    assert result.agreement == 0.0
    assert result.class_divergence < 0.05
    assert result.confidence_shift == pytest.approx(0.0, abs=1e-12)
    assert result.confidence_divergence == 0.0


def test_confidence_and_its_shift() -> None:
    sure, unsure = onehot([0, 1], width=2, hot=10.0), onehot([0, 1], width=2, hot=0.1)
    result = compare_classification("y", sure, unsure)
    assert result.agreement == 1.0
    assert result.confidence_a == pytest.approx(0.99995, abs=1e-4)
    assert result.confidence_b == pytest.approx(0.525, abs=1e-3)
    assert result.confidence_shift == pytest.approx(-0.475, abs=1e-3)
    assert result.confidence_divergence == 1.0  # every confidence in another bin
    assert json.loads(json.dumps(result.to_json()))["confidence_shift"] < 0


def test_leading_axes_are_samples() -> None:
    scores = LOGITS.reshape(20, 10, 10)
    result = compare_classification("y", scores, scores)
    assert result.samples == 200 and result.agreement == 1.0


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        ([1, 1], [1, 1], 0.0),
        ([5, 0], [0, 5], 1.0),  # disjoint: the maximum, in bits
        ([2, 2], [4, 0], 0.311278),
        ([4, 0], [2, 2], 0.311278),  # symmetric
        ([10, 30], [1, 3], 0.0),  # shares, not counts
        ([0, 0], [1, 3], 0.0),  # an empty histogram says nothing
    ],
)
def test_js_divergence(p: list[int], q: list[int], expected: float) -> None:
    assert js_divergence(np.array(p), np.array(q)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "within", "max_diff", "mean_diff"),
    [
        ([1.0, 2.0], [1.0, 2.0], 1.0, 0.0, 0.0),
        ([1.0, 2.0], [1.0, 2.5], 0.5, 0.5, 0.25),
        ([100.0, 0.0], [100.5, 0.0], 1.0, 0.5, 0.25),  # within rtol * |a| = 1.0
        ([0.0, 0.0], [0.05, 0.2], 0.5, 0.2, 0.125),  # near zero: atol = 0.1 rules
    ],
)
def test_numeric_outputs_within_tolerance(
    a: list[float], b: list[float], within: float, max_diff: float, mean_diff: float
) -> None:
    result = compare_numeric("score", np.array(a), np.array(b), atol=0.1, rtol=0.01)
    assert (result.within, result.samples) == (within, 2)
    assert result.max_abs_diff == pytest.approx(max_diff)
    assert result.mean_abs_diff == pytest.approx(mean_diff)


def test_compare_output_dispatches_by_kind() -> None:
    assert isinstance(
        compare_output("y", "classification", LOGITS, LOGITS, 0, 0), ClassificationComparison
    )
    assert compare_output("y", "numeric", LOGITS, LOGITS + 1, 0.5, 0).kind == "numeric"


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.zeros(4), np.zeros(4), r"output 'y' has shape \[4\]: a classification output needs"),
        (np.zeros((4, 1)), np.zeros((4, 1)), "a last axis of at least 2 class scores"),
        (
            np.zeros((4, 3)),
            np.zeros((5, 3)),
            r"output 'y': version A gives shape \[4, 3\], B \[5, 3\]",
        ),
    ],
)
def test_unusable_outputs_are_usage_errors(a: np.ndarray, b: np.ndarray, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        compare_classification("y", a, b)


def test_output_kinds() -> None:
    assert check_kind("numeric", "--output-kind y") == "numeric"
    with pytest.raises(UsageError, match="--output-kind y: unknown output kind 'logits'; use"):
        check_kind("logits", "--output-kind y")
