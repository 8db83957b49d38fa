"""The golden samples: the layout of golden.npz, and the parity of answers with its outputs.

`output_parity` is how far one output's answers are from the expected ones: ONNX Runtime's
from PyTorch's at export (modelrepo.parity), a served version's from its golden outputs
before traffic (adapters.golden_check). numpy only, so the operator image checks served
answers without onnxruntime or tritonclient. Pure. Two versions' answers compared with
each other are in modelrepo.output_comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelcanary.errors import VerificationError

INPUT_PREFIX = "inputs/"
OUTPUT_PREFIX = "outputs/"


@dataclass(frozen=True)
class OutputParity:
    """How far the answers are from the expected ones on one output at one batch size."""

    output: str
    batch_size: int
    max_abs_err: float
    max_rel_err: float
    ok: bool


def output_parity(
    output: str,
    batch_size: int,
    actual: np.ndarray,
    expected: np.ndarray,
    atol: float,
    rtol: float,
) -> OutputParity:
    """Compare like `numpy.isclose` (|a - e| <= atol + rtol * |e|, NaN equal to NaN).

    The relative error is reported over elements whose expected magnitude exceeds atol,
    so exact zeros do not turn a tiny absolute error into an infinite relative one.
    """
    if actual.shape != expected.shape:
        raise VerificationError(
            f"output {output!r} at batch size {batch_size}: ONNX Runtime gives shape "
            f"{actual.shape}, PyTorch {expected.shape}"
        )
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(e)
    diff = np.where(both_nan, 0.0, np.abs(a - e))
    diff = np.where(np.isnan(diff), np.inf, diff)
    magnitude = np.abs(e)
    significant = magnitude > atol
    rel = np.where(significant, diff / np.where(significant, magnitude, 1.0), 0.0)
    ok = bool(np.all(np.isclose(a, e, atol=atol, rtol=rtol, equal_nan=True)))
    return OutputParity(
        output=output,
        batch_size=batch_size,
        max_abs_err=float(diff.max(initial=0.0)),
        max_rel_err=float(rel.max(initial=0.0)),
        ok=ok,
    )


def golden_arrays(
    inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The arrays of golden.npz: `inputs/NAME` and `outputs/NAME`."""
    arrays = {INPUT_PREFIX + k: v for k, v in inputs.items()}
    arrays.update({OUTPUT_PREFIX + k: v for k, v in outputs.items()})
    return arrays


def split_golden(
    arrays: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Inverse of `golden_arrays`."""
    inputs = {k[len(INPUT_PREFIX) :]: v for k, v in arrays.items() if k.startswith(INPUT_PREFIX)}
    outputs = {k[len(OUTPUT_PREFIX) :]: v for k, v in arrays.items() if k.startswith(OUTPUT_PREFIX)}
    return inputs, outputs
