"""`modelcanary compare`: two versions of a model on the same samples, offline.

The offline counterpart of the live shadow comparison (shadow.live_comparison), on top of
the same per-output comparison (modelrepo.output_comparison).

Both versions run with ONNX Runtime on the given samples, A's labelled holdout, or A's
golden samples. The report holds each output compared by its declared kind, each declared
metric on labelled samples with the paired difference B - A, and the drift of the samples
against A's input profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modelcanary.errors import UsageError, VerificationError
from modelcanary.modelrepo import model_config
from modelcanary.modelrepo.drift import DriftReport, drift
from modelcanary.modelrepo.golden import split_golden
from modelcanary.modelrepo.holdout import Estimate, Metric, PairedResult, paired
from modelcanary.modelrepo.holdout_store import load_labels, read_holdout, read_profile
from modelcanary.modelrepo.manifest import GOLDEN, Manifest, sha256_file
from modelcanary.modelrepo.output_comparison import (
    ClassificationComparison,
    NumericComparison,
    OutputComparison,
    compare_output,
)
from modelcanary.modelrepo.parity import load_samples, run_onnxruntime, session_for
from modelcanary.modelrepo.repository import ModelRepository
from modelcanary.tables import format_table

Source = Literal["holdout", "golden"]


@dataclass(frozen=True)
class CompareRequest:
    """What to compare, on what, and how strictly."""

    repo: Path
    model: str
    a: int
    b: int
    samples_file: Path | None = None
    labels_key: str | None = None
    on: Source | None = None  # None: A's holdout when it has one, else its golden samples
    metrics: dict[str, Metric] = field(default_factory=dict)
    atol: float = 1e-3
    rtol: float = 1e-2
    confidence: float = 0.95
    margin: float = 0.01


@dataclass(frozen=True)
class CompareReport:
    """Everything `modelcanary compare` prints."""

    model: str
    a: int
    b: int
    source: str
    samples: int
    outputs: tuple[OutputComparison, ...]
    metrics: tuple[PairedResult, ...]
    drift: DriftReport | None
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "a": self.a,
            "b": self.b,
            "source": self.source,
            "samples": self.samples,
            "outputs": [o.to_json() for o in self.outputs],
            "metrics": [m.to_json() for m in self.metrics],
            "drift": self.drift.to_json() if self.drift else None,
            "notes": list(self.notes),
        }


def compare_versions(request: CompareRequest) -> CompareReport:
    """Run both versions on the same samples and compare them."""
    if request.samples_file is None and request.labels_key:
        raise UsageError("--labels needs --samples FILE.npz: the labels are an array in it")
    repo = ModelRepository(request.repo)
    a, b = (_manifest(repo, request.model, v) for v in (request.a, request.b))
    problems = b.signature.differences(a.signature, f"version {b.version}", f"version {a.version}")
    if problems:
        raise UsageError(f"the versions have different signatures: {'; '.join(problems)}")
    notes: list[str] = []
    inputs, labels, source, profiled = _samples(repo, request, a, b, notes)
    outputs_a, outputs_b = (_run(repo, m, inputs) for m in (a, b))
    compared = []
    for spec in a.signature.outputs:
        kind = a.output_kind(spec.name) or b.output_kind(spec.name)
        if kind is None:
            notes.append(f"output {spec.name!r} has no declared kind: compared as numeric")
        elif b.output_kind(spec.name) not in (None, kind):
            notes.append(f"output {spec.name!r} is {kind} in A, not in B: compared as {kind}")
        compared.append(
            compare_output(
                spec.name,
                kind or "numeric",
                outputs_a[spec.name],
                outputs_b[spec.name],
                request.atol,
                request.rtol,
            )
        )
    metrics = []
    for spec in a.signature.outputs:
        metric = request.metrics.get(spec.name) or a.metric(spec.name) or b.metric(spec.name)
        if labels is None or metric is None:
            continue
        metrics.append(
            paired(
                spec.name,
                metric,
                labels,
                outputs_a[spec.name],
                outputs_b[spec.name],
                request.confidence,
                request.margin,
            )
        )
    if labels is None:
        notes.append("no labelled samples: metrics not checked")
    elif not metrics:
        notes.append("no metric declared for any output: metrics not checked")
    report_drift = None
    if a.profile_file is None:
        notes.append(f"version {a.version} has no input profile (exported without --samples)")
    elif profiled:
        notes.append(
            f"drift not measured: version {a.version}'s profile was made from these samples"
        )
    else:
        profile_path = repo.version_dir(a.model, a.version) / a.profile_file
        _check_pinned(a, profile_path)
        report_drift = drift(read_profile(profile_path), inputs)
    count = len(next(iter(inputs.values())))
    return CompareReport(
        request.model,
        a.version,
        b.version,
        source,
        count,
        tuple(compared),
        tuple(metrics),
        report_drift,
        tuple(notes),
    )


def _manifest(repo: ModelRepository, model: str, version: int) -> Manifest:
    if model not in repo.models():
        known = ", ".join(repo.models()) or "none"
        raise UsageError(f"{repo.root}: no model {model!r} (models: {known})")
    if version not in repo.versions(model):
        known = ", ".join(map(str, repo.versions(model))) or "none"
        raise UsageError(f"{repo.root}: model {model!r} has no version {version} ({known})")
    return repo.read_manifest(model, version)


def _check_pinned(manifest: Manifest, path: Path) -> None:
    """A file used for judging must be the one the manifest pins."""
    relative = f"{manifest.version}/{path.name}"
    expected = manifest.files.get(relative)
    if expected is None or sha256_file(path) != expected:
        raise VerificationError(
            f"{manifest.model}/{relative} does not match the sha256 in its manifest; "
            "run modelcanary repo verify"
        )


def _samples(
    repo: ModelRepository, request: CompareRequest, a: Manifest, b: Manifest, notes: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray | None, str, bool]:
    """The inputs to run, their labels if any, where they came from, and whether A's
    profile was made from them (its holdout is the samples file it was exported with)."""
    if request.samples_file is not None:
        inputs = load_samples(request.samples_file, a.signature.inputs, 1)
        count = len(next(iter(inputs.values())))
        labels = None
        if request.labels_key is not None:
            labels = load_labels(request.samples_file, request.labels_key, count)
        return inputs, labels, str(request.samples_file), False
    directory = repo.version_dir(a.model, a.version)
    if request.on == "holdout" and a.holdout_file is None:
        raise UsageError(f"{a.model}:{a.version} has no holdout (exported without --labels)")
    if request.on != "golden" and a.holdout_file is not None:
        path = directory / a.holdout_file
        _check_pinned(a, path)
        pinned_b = b.files.get(f"{b.version}/{b.holdout_file}") if b.holdout_file else None
        if pinned_b != a.files[f"{a.version}/{a.holdout_file}"]:
            notes.append(f"version {b.version} has another holdout; both run on {a.version}'s")
        inputs, labels = read_holdout(path)
        return inputs, labels, f"the holdout of version {a.version}", True
    path = directory / GOLDEN
    _check_pinned(a, path)
    with np.load(path, allow_pickle=False) as data:
        inputs, _ = split_golden({k: data[k] for k in data.files})
    return inputs, None, f"the golden samples of version {a.version}", False


def _run(
    repo: ModelRepository, manifest: Manifest, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    path = repo.version_dir(manifest.model, manifest.version) / model_config.MODEL_FILENAME
    _check_pinned(manifest, path)
    return run_onnxruntime(session_for(path), inputs, manifest.max_batch_size or None)


def render_text(report: CompareReport, worst: int = 5) -> str:
    """The report as text: outputs, metrics, drift, notes."""
    title = (
        f"{report.model}: version {report.a} (A) vs version {report.b} (B) on {report.source} "
        f"({report.samples} samples)"
    )
    classes = [o for o in report.outputs if isinstance(o, ClassificationComparison)]
    numeric = [o for o in report.outputs if isinstance(o, NumericComparison)]
    sections = [
        title,
        _classification_section(classes) if classes else "",
        _numeric_section(numeric) if numeric else "",
        _metrics_section(report.metrics) if report.metrics else "",
        _drift_section(report.a, report.drift, worst) if report.drift else "",
        "\n".join(f"note: {note}" for note in report.notes),
    ]
    return "\n\n".join(section for section in sections if section)


def _classification_section(classes: list[ClassificationComparison]) -> str:
    header = ("OUTPUT", "TOP-1 AGREEMENT", "CONFIDENCE A", "CONFIDENCE B (SHIFT)", "CLASS JS")
    rows = [
        (
            c.output,
            f"{c.agreement:.1%}",
            f"{c.confidence_a:.3f}",
            f"{c.confidence_b:.3f} ({c.confidence_shift:+.3f})",
            f"{c.class_divergence:.3f}",
        )
        for c in classes
    ]
    histograms = [
        f"  {c.output}: predicted classes A {' '.join(map(str, c.classes_a))}; "
        f"B {' '.join(map(str, c.classes_b))}; confidence JS {c.confidence_divergence:.3f}"
        for c in classes
    ]
    return "\n".join([format_table([header, *rows]), *histograms])


def _numeric_section(numeric: list[NumericComparison]) -> str:
    header = ("OUTPUT", "WITHIN TOLERANCE", "MAX ABS DIFF", "MEAN ABS DIFF", "TOLERANCE")
    rows = [
        (
            n.output,
            f"{n.within:.1%}",
            f"{n.max_abs_diff:.3e}",
            f"{n.mean_abs_diff:.3e}",
            f"atol {n.atol:g}, rtol {n.rtol:g}",
        )
        for n in numeric
    ]
    return format_table([header, *rows])


def _metrics_section(metrics: tuple[PairedResult, ...]) -> str:
    intro = (
        f"Metrics, {metrics[0].confidence:.0%} intervals (worse: the whole interval of B - A "
        f"beyond a margin of {metrics[0].margin:g}):"
    )
    header = ("OUTPUT", "METRIC", "A", "B", "B - A", "DECISION")
    rows = [
        (
            m.output,
            m.metric,
            _interval(m.stable),
            _interval(m.canary),
            _interval(m.difference, signed=True),
            m.decision,
        )
        for m in metrics
    ]
    return f"{intro}\n{format_table([header, *rows])}"


def _drift_section(version: int, report: DriftReport, worst: int) -> str:
    intro = (
        f"Input drift against version {version}'s profile ({report.reference_samples} "
        f"samples), PSI above the noise of {report.samples} samples (0.1 moderate, 0.25 "
        f"major), worst {worst}:"
    )
    header = ("FEATURE", "PSI", "NOISE", "REFERENCE MEAN", "MEAN")
    rows = [
        (f.name, f"{f.psi:.3f}", f"{f.noise:.3f}", f"{f.reference_mean:.4g}", f"{f.mean:.4g}")
        for f in report.worst(worst)
    ]
    return f"{intro}\n{format_table([header, *rows])}"


def _interval(value: Estimate | None, signed: bool = False) -> str:
    return "-" if value is None else value.describe(signed)
