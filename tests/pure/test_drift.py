"""Input drift against a reference profile: PSI over quantile bins, and its noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelcanary.errors import UsageError
from modelcanary.modelrepo.drift import InputProfile, drift, profile_inputs, psi, psi_noise


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
