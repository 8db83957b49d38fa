"""The champion/challenger gate before the first step: the canary must not be worse than
stable on labelled data, both versions asked as served.

The holdout is stable's (the champion's yardstick) joined with the canary's own when it
has a different one of the same layout; each is read through a repository reader and
checked against its manifest's sha256. Every output with a declared metric (stable's
declaration first) is scored on both versions' answers, paired sample by sample
(`modelrepo.holdout.paired`). The canary is "worse" when any output is; "not checked"
when neither version has a labelled holdout, or it is too small to judge.
"""

from __future__ import annotations

import httpx
import numpy as np

from modelcanary.adapters.repo_reader import (
    CheckUnavailable,
    RepositoryReader,
    pinned_file,
    version_manifest,
)
from modelcanary.adapters.served_version import served_answers
from modelcanary.errors import UsageError
from modelcanary.modelrepo.holdout import Metric, PairedResult, paired
from modelcanary.modelrepo.holdout_store import parse_holdout
from modelcanary.modelrepo.manifest import Manifest
from modelcanary.rollout.ports import GateOutcome, GateResult

Holdout = tuple[dict[str, np.ndarray], np.ndarray]


def run_holdout_gate(
    urls: tuple[str, str],
    reader: RepositoryReader,
    model: str,
    versions: tuple[str, str],
    margin: float,
    confidence: float,
    client: httpx.Client | None = None,
) -> GateResult:
    """Stable and canary (`versions`, served at `urls`) on the labelled holdout."""
    stable, canary = versions
    manifests = (version_manifest(reader, model, stable), version_manifest(reader, model, canary))
    holdout = _holdout(reader, manifests)
    if holdout is None:
        return GateResult(
            "not checked",
            f"neither {model}:{stable} nor {model}:{canary} has a labelled holdout "
            "(export with --samples, --labels and --metric)",
        )
    metrics = _metrics(manifests)
    if not metrics:
        return GateResult("not checked", f"no output of {model} declares a holdout metric")
    inputs, labels = holdout
    http = client or httpx.Client(timeout=30.0)
    answers = [
        served_answers(
            http, url, model, version, inputs, manifest.max_batch_size, metrics, "holdout-gate"
        )
        for url, version, manifest in zip(urls, versions, manifests, strict=True)
    ]
    try:
        results = [
            paired(name, metric, labels, answers[0][name], answers[1][name], confidence, margin)
            for name, metric in metrics.items()
        ]
    except UsageError as exc:
        raise CheckUnavailable(f"the holdout cannot be scored: {exc}") from None
    return _verdict(results)


def _holdout(reader: RepositoryReader, manifests: tuple[Manifest, Manifest]) -> Holdout | None:
    """Stable's holdout, joined with the canary's own when that differs and fits."""
    found: list[tuple[bytes, Holdout]] = []
    for manifest in manifests:
        if manifest.holdout_file is None:
            continue
        data = pinned_file(reader, manifest, manifest.holdout_file)
        if any(data == seen for seen, _ in found):
            continue
        source = f"{manifest.model}:{manifest.version} {manifest.holdout_file}"
        try:
            found.append((data, parse_holdout(data, source)))
        except UsageError as exc:
            raise CheckUnavailable(str(exc)) from None
    if not found:
        return None
    inputs, labels = found[0][1]
    for _, (more_inputs, more_labels) in found[1:]:
        if _fits(inputs, labels, more_inputs, more_labels):
            inputs = {n: np.concatenate([a, more_inputs[n]]) for n, a in inputs.items()}
            labels = np.concatenate([labels, more_labels])
    return inputs, labels


def _fits(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    more: dict[str, np.ndarray],
    more_labels: np.ndarray,
) -> bool:
    """Two holdouts of one layout: same inputs (shape past the first axis, dtype), labels."""
    same_inputs = inputs.keys() == more.keys() and all(
        a.shape[1:] == more[n].shape[1:] and a.dtype == more[n].dtype for n, a in inputs.items()
    )
    return (
        same_inputs
        and labels.shape[1:] == more_labels.shape[1:]
        and (labels.dtype.kind == more_labels.dtype.kind)
    )


def _metrics(manifests: tuple[Manifest, Manifest]) -> dict[str, Metric]:
    """Each output's declared metric, stable's declaration first."""
    metrics: dict[str, Metric] = {}
    for manifest in manifests:
        for spec in manifest.signature.outputs:
            metric = manifest.metric(spec.name)
            if metric is not None and spec.name not in metrics:
                metrics[spec.name] = metric
    return metrics


def _verdict(results: list[PairedResult]) -> GateResult:
    decisions = {r.decision for r in results}
    outcome: GateOutcome = (
        "worse"
        if "worse" in decisions
        else "not worse"
        if "not worse" in decisions
        else "not checked"
    )
    numbers: dict[str, float | int | str] = {}
    for r in results:
        prefix = "holdout_" if len(results) == 1 else f"holdout_{r.output}_"
        numbers[f"{prefix}samples"] = r.samples
        numbers[f"{prefix}margin"] = r.margin
        for name, estimate in (
            ("stable", r.stable),
            ("canary", r.canary),
            ("difference", r.difference),
        ):
            if estimate is not None:
                numbers[f"{prefix}{name}"] = round(estimate.value, 6)
                numbers[f"{prefix}{name}_low"] = round(estimate.low, 6)
                numbers[f"{prefix}{name}_high"] = round(estimate.high, 6)
    ordered = sorted(results, key=lambda r: r.decision != "worse")
    return GateResult(outcome, "; ".join(r.describe() for r in ordered), numbers)
