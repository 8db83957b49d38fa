"""`export --quantize int8`: ONNX Runtime dynamic quantization, kept only when the int8
graph agrees with the fp32 one within declared limits.

Dynamic quantization stores weights as int8 and quantizes activations at run time with a
scale taken from each batch, so an answer depends slightly on the batch it was computed
in. The int8 graph is judged against the fp32 graph on the samples with the comparison
core (classification outputs: top-1 agreement; numeric outputs: the share of elements
within tolerance), and, with a labelled holdout, by the paired metric difference.
"""

from __future__ import annotations

import contextlib
import io
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from modelcanary.errors import UsageError, VerificationError, one_line
from modelcanary.modelrepo.holdout import Metric, PairedResult, paired
from modelcanary.modelrepo.output_comparison import (
    ClassificationComparison,
    OutputComparison,
    OutputKind,
    compare_output,
)
from modelcanary.modelrepo.parity import ParityReport, check_parity, run_onnxruntime, session_for

MODES = ("int8",)
TIMING_RUNS = 50


@dataclass(frozen=True)
class QuantizeLimits:
    """How close the int8 graph must stay to the fp32 one."""

    min_agreement: float = 0.99  # top-1 agreement, or share of elements within tolerance
    atol: float = 0.1
    rtol: float = 0.05
    margin: float = 0.01  # largest loss of the holdout metric

    def validate(self) -> None:
        if not 0 <= self.min_agreement <= 1:
            raise UsageError("--quantize-min-agreement must be between 0 and 1")
        if self.atol < 0 or self.rtol < 0 or self.margin < 0:
            raise UsageError(
                "--quantize-atol, --quantize-rtol and --quantize-margin must not be negative"
            )


@dataclass(frozen=True)
class QuantizeReport:
    """The int8 graph against the fp32 one: agreement, metrics, size and speed."""

    limits: QuantizeLimits
    samples: int
    outputs: tuple[OutputComparison, ...]
    metrics: tuple[PairedResult, ...]
    fp32_bytes: int
    int8_bytes: int
    batch_size: int | None
    fp32_ms: float
    int8_ms: float

    def failures(self) -> list[str]:
        """Each limit the int8 graph breaks, in words."""
        problems = []
        for o in self.outputs:
            share = o.agreement if isinstance(o, ClassificationComparison) else o.within
            what = (
                "top-1 agreement"
                if isinstance(o, ClassificationComparison)
                else f"share within atol {o.atol:g}, rtol {o.rtol:g}"
            )
            if share < self.limits.min_agreement:
                problems.append(
                    f"output {o.output!r}: {what} with fp32 is {share:.2%}, "
                    f"below {self.limits.min_agreement:.2%}"
                )
        for m in self.metrics:
            if m.decision == "worse" and m.difference is not None:
                problems.append(
                    f"output {m.output!r}: {m.metric} drops by {-m.difference.value:.4f} "
                    f"(interval {m.difference.low:+.4f} to {m.difference.high:+.4f}), "
                    f"beyond the margin {self.limits.margin:g}"
                )
        return problems

    def summary(self) -> str:
        """Size and speed against fp32, and the agreement, in two lines."""
        batch = f"a batch of {self.batch_size}" if self.batch_size else "one unbatched sample"
        agreement = ", ".join(
            f"{o.output} {o.agreement:.1%} top-1"
            if isinstance(o, ClassificationComparison)
            else f"{o.output} {o.within:.1%} within tolerance"
            for o in self.outputs
        )
        return (
            f"int8: {self.int8_bytes / 1024:.1f} KiB ({self.int8_bytes / self.fp32_bytes:.0%} of "
            f"fp32's {self.fp32_bytes / 1024:.1f} KiB); {_duration(self.int8_ms)} for {batch} "
            f"(fp32 {_duration(self.fp32_ms)}: {self.fp32_ms / self.int8_ms:.2f}x as fast)\n"
            f"int8 against fp32 on {self.samples} samples: {agreement}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "int8",
            "method": "onnxruntime dynamic quantization (int8 weights, per-batch activations)",
            "limits": vars(self.limits),
            "samples": self.samples,
            "outputs": [o.to_json() for o in self.outputs],
            "metrics": [m.to_json() for m in self.metrics],
            "fp32_bytes": self.fp32_bytes,
            "int8_bytes": self.int8_bytes,
            "batch_size": self.batch_size,
            "fp32_ms": self.fp32_ms,
            "int8_ms": self.int8_ms,
        }


def quantize_int8(fp32: bytes) -> bytes:
    """The dynamically quantized graph (checked with onnx.checker)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load_from_string(fp32)
    del proto.graph.value_info[:]  # the quantizer re-infers shapes; stale ones conflict
    with tempfile.TemporaryDirectory(prefix="modelcanary-int8-") as work, _quiet():
        target = Path(work) / "int8.onnx"
        try:
            quantize_dynamic(proto, target, weight_type=QuantType.QInt8)
        except Exception as exc:
            raise VerificationError(
                f"ONNX Runtime cannot quantize the graph: {one_line(exc)}"
            ) from None
        int8 = target.read_bytes()
    try:
        onnx.checker.check_model(onnx.load_from_string(int8), full_check=True)
    except Exception as exc:
        raise VerificationError(f"onnx.checker rejects the int8 graph: {one_line(exc)}") from None
    return int8


def judge(
    fp32: bytes,
    int8: bytes,
    samples: dict[str, np.ndarray],
    batch_size: int | None,
    kinds: Mapping[str, OutputKind],
    holdout: tuple[Mapping[str, Metric], np.ndarray] | None,
    limits: QuantizeLimits,
) -> QuantizeReport:
    """Run both graphs on the samples (with labels: the holdout) and compare them."""
    sessions = [session_for(fp32), session_for(int8)]
    want, got = (run_onnxruntime(s, samples, batch_size) for s in sessions)
    outputs = tuple(
        compare_output(
            name, kinds.get(name, "numeric"), want[name], got[name], limits.atol, limits.rtol
        )
        for name in want
    )
    metrics: tuple[PairedResult, ...] = ()
    if holdout is not None:
        declared, labels = holdout
        metrics = tuple(
            paired(name, metric, labels, want[name], got[name], 0.95, limits.margin)
            for name, metric in declared.items()
        )
    feed = {k: v[0] if batch_size is None else v[:batch_size] for k, v in samples.items()}
    fp32_ms, int8_ms = (_median_ms(s, feed) for s in sessions)
    count = len(next(iter(samples.values())))
    return QuantizeReport(
        limits, count, outputs, metrics, len(fp32), len(int8), batch_size, fp32_ms, int8_ms
    )


def _duration(ms: float) -> str:
    return f"{ms:.2f} ms" if ms >= 1 else f"{ms * 1000:.1f} µs"


def _median_ms(session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> float:
    for _ in range(5):
        session.run(None, feed)
    times = []
    for _ in range(TIMING_RUNS):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the quantizer's advice (pre-processing, ...) off the terminal."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class QuantizedVersion:
    """What an int8 export publishes: the graph, its golden outputs and their parity."""

    onnx_bytes: bytes
    golden: dict[str, np.ndarray]
    parity: ParityReport
    report: QuantizeReport


def quantize_version(
    fp32: bytes,
    golden_inputs: dict[str, np.ndarray],
    samples: dict[str, np.ndarray],
    batch_sizes: Sequence[int | None],
    kinds: Mapping[str, OutputKind],
    holdout: tuple[Mapping[str, Metric], np.ndarray] | None,
    limits: QuantizeLimits,
) -> QuantizedVersion:
    """Quantize, judge against fp32, and make the golden outputs: the int8 graph's answers
    one sample at a time, which every batch size must match within the limits' tolerance."""
    int8 = quantize_int8(fp32)
    largest = batch_sizes[-1]
    report = judge(fp32, int8, samples, largest, kinds, holdout, limits)
    problems = report.failures()
    if problems:
        raise VerificationError(
            f"the int8 graph is too far from fp32: {'; '.join(problems)}; nothing was written"
        )
    session = session_for(int8)
    golden = run_onnxruntime(session, golden_inputs, None if largest is None else 1)
    parity = check_parity(session, golden_inputs, golden, batch_sizes, limits.atol, limits.rtol)
    if not parity.ok:
        worst = parity.worst()
        raise VerificationError(
            f"the int8 graph's output {worst.output!r} at batch size {worst.batch_size} is "
            f"{worst.max_abs_err:.3e} from its answers one sample at a time (atol {limits.atol}, "
            f"rtol {limits.rtol}); nothing was written"
        )
    return QuantizedVersion(int8, golden, parity, report)
