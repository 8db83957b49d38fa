"""The comparison core: outputs by kind, histogram divergences, input drift. Table-driven."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelcanary.errors import UsageError
from modelcanary.modelrepo.comparison import (
    ClassificationComparison,
    InputProfile,
    check_kind,
    compare_classification,
    compare_numeric,
    compare_output,
    drift,
    js_divergence,
    probabilities,
    profile_inputs,
    psi,
    psi_noise,
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


@pytest.mark.parametrize(
    ("reference", "current", "count", "expected"),
    [
        ([0.5, 0.5], [0.5, 0.5], 1000, 0.0),
        ([0.5, 0.5], [0.4, 0.6], 1000, 0.040464),
        ([0.5, 0.5], [1.0, 0.0], 1000, 3.796904),  # an empty bin is smoothed, not infinite
        ([0.5, 0.5], [1.0, 0.0], 10, 1.383874),  # ...the more, the fewer the samples
    ],
)
def test_psi(reference: list[float], current: list[float], count: int, expected: float) -> None:
    assert psi(np.array(reference), count, np.array(current), count) == pytest.approx(
        expected, abs=1e-5
    )


def test_psi_noise_is_what_sampling_alone_gives() -> None:
    assert psi_noise(10, 360, 32) == pytest.approx(9 * (1 / 32 + 1 / 360))
    rng = np.random.default_rng(5)
    profile = profile_inputs({"x": rng.standard_normal((360, 200))})
    report = drift(profile, {"x": rng.standard_normal((32, 200))})
    mean_psi = np.mean([f.psi for f in report.features])  # a little under: smoothing
    assert 0.7 * report.features[0].noise < mean_psi < 1.1 * report.features[0].noise


def reference_inputs(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((2000, 3)).astype(np.float32),
        "level": rng.integers(0, 4, size=(2000, 1)),  # discrete: point masses
        "blank": np.zeros((2000, 2)),  # a constant feature
        "image": rng.random((2000, 1, 20, 20)),  # 400 elements: summarised
    }


def test_the_reference_scores_no_drift_against_itself() -> None:
    inputs = reference_inputs()
    report = drift(profile_inputs(inputs), inputs)
    assert report.features[0].psi < 1e-9
    assert report.samples == report.reference_samples == 2000


def test_drift_names_the_worst_features_first() -> None:
    profile = profile_inputs(reference_inputs())
    moved = reference_inputs(seed=2)  # a fresh draw: only sampling noise...
    moved["x"][:, 1] += 1.0  # ...but a shifted mean,
    moved["blank"][:, 0] = np.random.default_rng(3).random(2000)  # a constant that varies,
    moved["level"][:, 0] = 3  # and one level taking over
    report = drift(profile, moved)
    worst = {f.name for f in report.worst(3)}
    assert worst == {"x[1]", "blank[0]", "level[0]"}
    assert all(f.psi > f.noise + 0.25 for f in report.worst(3))
    assert all(f.psi < f.noise + 0.05 for f in report.features[3:])
    assert report.to_json(2)["max_psi"] == max(f.psi for f in report.features)
    assert len(report.to_json(2)["worst"]) == 2


def test_large_and_variable_inputs_are_profiled_by_summaries() -> None:
    profile = profile_inputs(reference_inputs(), variable=frozenset({"x"}))
    assert profile.modes == {
        "x": "summary",
        "level": "elements",
        "blank": "elements",
        "image": "summary",
    }
    names = [f.name for f in profile.features]
    assert names == [
        "x.mean",
        "x.std",
        "level[0]",
        "blank[0]",
        "blank[1]",
        "image.mean",
        "image.std",
    ]
    assert InputProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile


def test_samples_that_do_not_fit_the_profile() -> None:
    profile = profile_inputs({"x": np.zeros((10, 3))})
    with pytest.raises(UsageError, match="the samples have no input 'x'"):
        drift(profile, {"y": np.zeros((10, 3))})
    with pytest.raises(UsageError, match="the samples have no feature 'x\\[2\\]' of the reference"):
        drift(profile, {"x": np.zeros((10, 2))})
