"""The comparison behind every parity check: pure, table-driven."""

from __future__ import annotations

import numpy as np
import pytest

from modelcanary.errors import VerificationError
from modelcanary.modelrepo.golden import output_parity
from modelcanary.modelrepo.parity import make_golden_inputs, parity_batch_sizes
from modelcanary.modelrepo.tensorspec import DTYPES, TensorSpec


@pytest.mark.parametrize(
    ("actual", "expected", "ok", "max_abs"),
    [
        ([1.0, 2.0], [1.0, 2.0], True, 0.0),
        ([1.0 + 1e-4, 2.0], [1.0, 2.0], True, 1e-4),  # at atol + rtol*|e|: passes
        ([1.0 + 2e-3, 2.0], [1.0, 2.0], False, 2e-3),  # above: fails
        ([np.nan, 1.0], [np.nan, 1.0], True, 0.0),  # NaN where PyTorch has NaN
        ([np.nan, 1.0], [0.0, 1.0], False, np.inf),  # NaN where PyTorch has none
        ([0.0, 5e-5], [0.0, 0.0], True, 5e-5),  # near zero: absolute tolerance rules
    ],
)
def test_output_parity_uses_isclose_semantics(
    actual: list[float], expected: list[float], ok: bool, max_abs: float
) -> None:
    result = output_parity("y", 4, np.array(actual), np.array(expected), atol=1e-4, rtol=1e-3)
    assert result.ok is ok
    assert result.max_abs_err == pytest.approx(max_abs, rel=1e-6, abs=1e-12)


def test_relative_error_ignores_exact_zeros() -> None:
    result = output_parity("y", 1, np.array([1e-6, 2.02]), np.array([0.0, 2.0]), 1e-4, 1e-3)
    assert result.max_rel_err == pytest.approx(0.01, rel=1e-6)


def test_shape_mismatch_is_a_verification_error() -> None:
    with pytest.raises(VerificationError, match="output 'y' at batch size 2: ONNX Runtime gives"):
        output_parity("y", 2, np.zeros((2, 3)), np.zeros((2, 4)), 1e-4, 1e-3)


@pytest.mark.parametrize(
    ("max_batch", "samples", "sizes"),
    [(0, 32, [None]), (1, 32, [1]), (2, 32, [1, 2]), (8, 32, [1, 3, 8]), (64, 5, [1, 3, 5])],
)
def test_batch_sizes_exercise_the_batch_axis(
    max_batch: int, samples: int, sizes: list[int | None]
) -> None:
    assert parity_batch_sizes(max_batch, samples) == sizes


def test_golden_inputs_are_reproducible_and_typed() -> None:
    specs = [
        TensorSpec("x", DTYPES["fp16"], (3, -1)),
        TensorSpec("ids", DTYPES["int64"], (4,)),
        TensorSpec("mask", DTYPES["bool"], (2,)),
    ]
    first, second = make_golden_inputs(specs, 5, seed=7), make_golden_inputs(specs, 5, seed=7)
    assert first["x"].shape == (5, 3, 8) and first["x"].dtype == np.float16
    assert first["ids"].dtype == np.int64 and first["ids"].min() >= 0 and first["ids"].max() < 10
    assert first["mask"].dtype == np.bool_
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
