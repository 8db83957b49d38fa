"""What a version declares about its outputs and data: output kinds, the labelled holdout
and its metrics, the reference profile of its inputs; their files and manifest entries.

    REPO/NAME/<N>/holdout.npz     inputs/<name> and labels: the labelled holdout
    REPO/NAME/<N>/profile.json    the reference profile of the inputs (quantile bins)

Manifests written before these existed read as "nothing declared": every output
numeric, no holdout, no profile.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelcanary.errors import UsageError, one_line
from modelcanary.modelrepo.drift import InputProfile
from modelcanary.modelrepo.golden import INPUT_PREFIX, golden_arrays, split_golden
from modelcanary.modelrepo.holdout import Metric, estimate
from modelcanary.modelrepo.output_comparison import OutputKind, check_kind
from modelcanary.modelrepo.tensorspec import VARIABLE, Signature

HOLDOUT = "holdout.npz"
PROFILE = "profile.json"
LABELS = "labels"


@dataclass(frozen=True)
class Declarations:
    """`--output-kind`, `--labels` and `--metric` of one export."""

    kinds: dict[str, OutputKind] = field(default_factory=dict)
    labels_key: str | None = None
    metrics: dict[str, Metric] = field(default_factory=dict)

    def validate(self, has_samples: bool) -> None:
        """The flags on their own: labels need samples, metrics and labels need each other."""
        if self.labels_key is not None and not has_samples:
            raise UsageError("--labels needs --samples FILE.npz: the labels are an array in it")
        if self.labels_key is not None and not self.metrics:
            raise UsageError("--labels needs a --metric OUTPUT=METRIC to evaluate on them")
        if self.metrics and self.labels_key is None:
            raise UsageError("--metric needs --labels KEY: an array of labels in --samples")

    def check_outputs(self, signature: Signature) -> None:
        """Every declaration names an output, and a classification output has classes."""
        dims = {spec.name: spec.dims for spec in signature.outputs}
        for flag, names in (("--output-kind", self.kinds), ("--metric", self.metrics)):
            for name in names:
                if name not in dims:
                    raise UsageError(
                        f"{flag} {name}: the model has no output {name!r} "
                        f"(outputs: {', '.join(dims)})"
                    )
        for name, kind in self.kinds.items():
            last = dims[name][-1] if dims[name] else 1
            if kind == "classification" and last != VARIABLE and last < 2:
                raise UsageError(
                    f"--output-kind {name}=classification: the output has dims "
                    f"{list(dims[name])}; classes need a last dim of at least 2"
                )


def parse_assignments(values: Iterable[str], flag: str) -> dict[str, str]:
    """`OUTPUT=VALUE` flags as a dict; an output named twice is an error."""
    result: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"{flag} {text!r} is not OUTPUT=VALUE")
        if name in result:
            raise UsageError(f"{flag} names output {name!r} more than once")
        result[name] = value
    return result


def parse_declarations(
    kinds: Iterable[str], labels_key: str | None, metrics: Iterable[str]
) -> Declarations:
    """The command-line flags as declarations."""
    return Declarations(
        kinds={
            name: check_kind(value, f"--output-kind {name}")
            for name, value in parse_assignments(kinds, "--output-kind").items()
        },
        labels_key=labels_key,
        metrics={
            name: Metric.parse(value)
            for name, value in parse_assignments(metrics, "--metric").items()
        },
    )


def load_labels(path: Path, key: str, count: int) -> np.ndarray:
    """The labels array `key` of a samples file, one per sample."""
    with np.load(path, allow_pickle=False) as data:
        if key not in data.files:
            raise UsageError(
                f"--labels {key}: {path} has no array {key!r} (arrays: {', '.join(data.files)})"
            )
        labels = np.asarray(data[key])
    if labels.ndim == 0 or len(labels) != count:
        raise UsageError(
            f"--labels {key}: {path} has {0 if labels.ndim == 0 else len(labels)} labels "
            f"for {count} samples"
        )
    return labels


def holdout_bytes(inputs: Mapping[str, np.ndarray], labels: np.ndarray) -> bytes:
    """The compressed `holdout.npz`: `inputs/NAME` and `labels`."""
    buffer = io.BytesIO()
    arrays = golden_arrays(dict(inputs), {})
    np.savez_compressed(buffer, allow_pickle=False, **arrays, **{LABELS: labels})
    return buffer.getvalue()


def read_holdout(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The inputs and labels of a `holdout.npz`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: not a readable holdout: {one_line(exc)}") from None
    return parse_holdout(data, str(path))


def parse_holdout(data: bytes, source: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The inputs and labels of a `holdout.npz` given as bytes; errors name `source`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise UsageError(f"{source}: not a readable holdout: {one_line(exc)}") from None
    if LABELS not in arrays or not any(k.startswith(INPUT_PREFIX) for k in arrays):
        raise UsageError(f"{source}: a holdout needs inputs/NAME arrays and {LABELS!r}")
    inputs, _ = split_golden(arrays)
    return inputs, arrays[LABELS]


def read_profile(path: Path) -> InputProfile:
    """A version's reference profile."""
    try:
        return InputProfile.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a readable input profile: {one_line(exc)}") from None


def evaluate(
    metrics: Mapping[str, Metric], outputs: Mapping[str, np.ndarray], labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """Each declared metric on the holdout, with its 95% interval, for the manifest."""
    result = {}
    for name, metric in metrics.items():
        value = estimate(metric, metric.per_sample(name, outputs[name], labels), 0.95)
        result[name] = {"value": value.value, "low": value.low, "high": value.high}
    return result


def manifest_entries(
    signature: Signature,
    declarations: Declarations,
    holdout: tuple[int, dict[str, dict[str, float]]] | None,
    profile: InputProfile | None,
) -> dict[str, Any]:
    """The manifest's `outputs`, `holdout` and `profile` entries (the latter two if any)."""
    outputs: dict[str, Any] = {}
    for spec in signature.outputs:
        entry: dict[str, Any] = {"kind": declarations.kinds.get(spec.name, "numeric")}
        if spec.name in declarations.metrics and holdout is not None:
            entry["metric"] = declarations.metrics[spec.name].describe()
            entry["holdout"] = holdout[1][spec.name]
        outputs[spec.name] = entry
    entries: dict[str, Any] = {"outputs": outputs}
    if holdout is not None:
        entries["holdout"] = {"file": HOLDOUT, "samples": holdout[0], "labels": LABELS}
    if profile is not None:
        entries["profile"] = {"file": PROFILE, "samples": profile.samples}
    return entries
