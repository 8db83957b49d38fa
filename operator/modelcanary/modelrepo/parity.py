"""Numerical parity between PyTorch and ONNX Runtime on golden samples.

The check itself is `golden.output_parity` (numpy only); `run_onnxruntime` and
`check_parity` run the graph on the CPU execution provider, batch by batch, at each
requested batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelcanary.errors import UsageError, VerificationError, one_line
from modelcanary.modelrepo.golden import OutputParity, output_parity
from modelcanary.modelrepo.tensorspec import VARIABLE, TensorSpec
from modelcanary.tables import format_table

# Size given to a variable (-1) dim in generated golden samples.
VARIABLE_DIM_SAMPLE = 8


@dataclass(frozen=True)
class ParityReport:
    """Every output at every batch size, against one tolerance."""

    atol: float
    rtol: float
    samples: int
    results: tuple[OutputParity, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> tuple[OutputParity, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({r.batch_size for r in self.results})

    def worst(self) -> OutputParity:
        return max(self.results, key=lambda r: (not r.ok, r.max_abs_err))

    def to_json(self) -> dict[str, object]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "samples": self.samples,
            "batch_sizes": self.batch_sizes,
            "ok": self.ok,
            "results": [asdict(r) for r in self.results],
        }

    def table(self) -> str:
        """A plain-text table of the results, one row per output and batch size."""
        rows = [("output", "batch", "max abs err", "max rel err", "result")]
        for r in self.results:
            rows.append(
                (
                    r.output,
                    str(r.batch_size) if r.batch_size else "unbatched",
                    f"{r.max_abs_err:.3e}",
                    f"{r.max_rel_err:.3e}",
                    "ok" if r.ok else "FAIL",
                )
            )
        return format_table(rows)


def make_golden_inputs(
    inputs: Sequence[TensorSpec], count: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Reproducible random samples: normal floats, small non-negative ints, fair bools."""
    rng = np.random.default_rng(seed)
    golden: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = (count, *(VARIABLE_DIM_SAMPLE if d == VARIABLE else d for d in spec.dims))
        kind = np.dtype(spec.dtype.numpy).kind
        array: np.ndarray
        if kind == "f":
            array = rng.standard_normal(shape)
        elif kind == "b":
            array = rng.random(shape) < 0.5
        else:
            array = rng.integers(0, 10, size=shape)
        golden[spec.name] = array.astype(spec.dtype.numpy)
    return golden


def load_samples(path: Path, inputs: Sequence[TensorSpec], count: int) -> dict[str, np.ndarray]:
    """Every row of an .npz file's arrays keyed by input name (at least `count` rows)."""
    if not path.is_file():
        raise UsageError(f"--samples {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:
        raise UsageError(f"--samples {path}: not a readable .npz file: {one_line(exc)}") from None
    golden: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in arrays:
            raise UsageError(f"--samples {path}: has no array for input {spec.name!r}")
        array = arrays[spec.name]
        if array.shape[0] < count:
            raise UsageError(
                f"--samples {path}: input {spec.name!r} has {array.shape[0]} samples, "
                f"--golden-samples asks for {count}"
            )
        sample_shape = array.shape[1:]
        if len(sample_shape) != len(spec.dims) or any(
            want not in (VARIABLE, got) for want, got in zip(spec.dims, sample_shape, strict=True)
        ):
            raise UsageError(
                f"--samples {path}: input {spec.name!r} has samples of shape {sample_shape}, "
                f"the input declares {spec.dims}"
            )
        golden[spec.name] = array.astype(spec.dtype.numpy)
    counts = {name: len(array) for name, array in golden.items()}
    if len(set(counts.values())) > 1:
        raise UsageError(f"--samples {path}: inputs have different sample counts {counts}")
    return golden


def session_for(model: bytes | Path) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU execution provider."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise VerificationError(f"ONNX Runtime cannot load the graph: {one_line(exc)}") from None


def run_onnxruntime(
    session: ort.InferenceSession,
    inputs: dict[str, np.ndarray],
    batch_size: int | None,
) -> dict[str, np.ndarray]:
    """Run every sample, `batch_size` at a time (None: one unbatched sample per run)."""
    count = next(iter(inputs.values())).shape[0]
    names = [o.name for o in session.get_outputs()]
    step = batch_size or 1
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, count, step):
        if batch_size is None:
            feed = {k: v[start] for k, v in inputs.items()}
        else:
            feed = {k: v[start : start + step] for k, v in inputs.items()}
        try:
            results = session.run(names, feed)
        except Exception as exc:
            where = f"batch size {batch_size}" if batch_size else "one unbatched sample"
            raise VerificationError(f"ONNX Runtime fails at {where}: {one_line(exc)}") from None
        for name, result in zip(names, results, strict=True):
            chunks[name].append(result if batch_size is not None else result[np.newaxis])
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def parity_batch_sizes(max_batch_size: int, samples: int) -> list[int | None]:
    """Batch sizes that exercise the dynamic batch axis: 1, an odd middle one, the largest."""
    if max_batch_size == 0:
        return [None]
    largest = min(max_batch_size, samples)
    sizes = {1, largest}
    if largest > 3:
        sizes.add(3)
    return list(sorted(sizes))


def check_parity(
    session: ort.InferenceSession,
    inputs: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    batch_sizes: Sequence[int | None],
    atol: float,
    rtol: float,
) -> ParityReport:
    """Run the golden inputs at every batch size and compare with the expected outputs."""
    results: list[OutputParity] = []
    for batch_size in batch_sizes:
        actual = run_onnxruntime(session, inputs, batch_size)
        for name, want in expected.items():
            results.append(output_parity(name, batch_size or 0, actual[name], want, atol, rtol))
    count = next(iter(inputs.values())).shape[0]
    return ParityReport(atol=atol, rtol=rtol, samples=count, results=tuple(results))
