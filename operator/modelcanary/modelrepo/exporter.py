"""`modelcanary export`: a PyTorch model becomes a verified version in a Triton repository.

Order matters: everything that can fail (arguments, the model, the export, onnx.checker,
parity, the signature against the existing config) runs before the first byte is written.
"""

from __future__ import annotations

import io
import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from modelcanary import __version__
from modelcanary.errors import UsageError, VerificationError
from modelcanary.modelrepo import model_config
from modelcanary.modelrepo.drift import profile_inputs
from modelcanary.modelrepo.golden import golden_arrays
from modelcanary.modelrepo.holdout_store import (
    HOLDOUT,
    PROFILE,
    Declarations,
    evaluate,
    holdout_bytes,
    load_labels,
    manifest_entries,
)
from modelcanary.modelrepo.manifest import (
    FORMAT,
    GOLDEN,
    MANIFEST,
    sha256_bytes,
    sha256_file,
    signature_to_json,
)
from modelcanary.modelrepo.model_config import ServingOptions
from modelcanary.modelrepo.model_loader import load_model
from modelcanary.modelrepo.onnx_export import (
    DEFAULT_OPSET,
    check_inputs_kept,
    export_onnx,
    graph_signature,
    run_torch,
    with_tuple_outputs,
)
from modelcanary.modelrepo.parity import (
    ParityReport,
    check_parity,
    load_samples,
    make_golden_inputs,
    parity_batch_sizes,
    run_onnxruntime,
    session_for,
)
from modelcanary.modelrepo.quantize import MODES, QuantizeLimits, quantize_version
from modelcanary.modelrepo.repository import (
    CONFIG,
    ModelRepository,
    VersionFiles,
    check_model_name,
)
from modelcanary.modelrepo.tensorspec import (
    VARIABLE,
    Signature,
    TensorSpec,
    check_tensor_name,
    check_unique,
)


@dataclass(frozen=True)
class ExportRequest:
    """Everything `modelcanary export` was asked to do."""

    model: str
    name: str
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...] = ()
    weights: Path | None = None
    version: int | None = None
    options: ServingOptions = field(default_factory=ServingOptions)
    repo: Path = Path("model_repo")
    golden_samples: int = 32
    samples_file: Path | None = None
    atol: float = 1e-4
    rtol: float = 1e-3
    opset: int = DEFAULT_OPSET
    seed: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    declarations: Declarations = field(default_factory=Declarations)
    quantize: str | None = None
    quantize_limits: QuantizeLimits = field(default_factory=QuantizeLimits)
    force: bool = False


@dataclass(frozen=True)
class ExportResult:
    """Where the version went and how well it matched PyTorch."""

    name: str
    version: int
    path: Path
    signature: Signature
    parity: ParityReport


def validate(request: ExportRequest) -> None:
    """Check the request on its own, before the model is loaded."""
    check_model_name(request.name)
    if not request.inputs:
        raise UsageError("give at least one --input NAME:DTYPE:DIMS")
    check_unique([s.name for s in request.inputs], "--input")
    for name in request.output_names:
        check_tensor_name(name, "--output")
    check_unique(list(request.output_names), "--output")
    _check_no_overlap(request.inputs, request.output_names)
    request.options.validate()
    if request.version is not None and request.version < 1:
        raise UsageError("--version must be a positive integer")
    batched = request.options.max_batch_size > 0
    least = 2 if batched else 1
    if request.golden_samples < least:
        raise UsageError(
            f"--golden-samples must be at least {least}"
            + (" (the batch axis is exported from a batch of 2)" if batched else "")
        )
    if request.atol < 0 or request.rtol < 0:
        raise UsageError("--atol and --rtol must not be negative")
    if not 7 <= request.opset <= 23:
        raise UsageError(f"--opset {request.opset} is not supported; use 7 to 23")
    request.declarations.validate(request.samples_file is not None)
    if request.quantize is not None and request.quantize not in MODES:
        raise UsageError(
            f"--quantize {request.quantize!r} is not supported; use {', '.join(MODES)}"
        )
    request.quantize_limits.validate()


def export(request: ExportRequest, say: Callable[[str], None] = print) -> ExportResult:
    """Export, verify and publish one version; raise before writing anything on failure."""
    validate(request)
    repo = ModelRepository(request.repo)
    repo.check_writable()  # now, not after the export
    existing = repo.read_config(request.name)
    version = request.version or repo.next_version(request.name)
    if repo.version_dir(request.name, version).exists() and not request.force:
        raise UsageError(
            f"{repo.version_dir(request.name, version)} already exists; "
            f"pass --force to replace version {version}"
        )
    batched = request.options.max_batch_size > 0

    model = load_model(request.model, request.weights, request.seed)
    samples, labels = None, None
    if request.samples_file:
        samples = load_samples(request.samples_file, request.inputs, request.golden_samples)
        inputs = {k: v[: request.golden_samples] for k, v in samples.items()}
        if request.declarations.labels_key is not None:
            count = len(next(iter(samples.values())))
            labels = load_labels(request.samples_file, request.declarations.labels_key, count)
    else:
        inputs = make_golden_inputs(request.inputs, request.golden_samples, request.seed or 0)
    expected_list, keys = _torch_outputs(model, inputs, request.options.max_batch_size)
    output_names = _output_names(request.output_names, keys or len(expected_list))
    _check_no_overlap(request.inputs, output_names)
    model = with_tuple_outputs(model, keys)
    expected = dict(zip(output_names, expected_list, strict=True))

    say(f"exporting {request.model} as {request.name} version {version} (opset {request.opset})")
    example = {k: v[:2] if batched else v[0] for k, v in inputs.items()}
    proto = export_onnx(model, request.inputs, output_names, example, batched, request.opset)
    check_inputs_kept(proto, request.inputs)
    signature = graph_signature(proto, batched)
    _check_declared_inputs(signature, request.inputs)
    if existing is not None:
        _check_same_signature(signature, model_config.signature_of(existing), repo, request.name)
    request.declarations.check_outputs(signature)

    onnx_bytes = proto.SerializeToString()
    session = session_for(onnx_bytes)
    batch_sizes = parity_batch_sizes(request.options.max_batch_size, request.golden_samples)
    report = check_parity(session, inputs, expected, batch_sizes, request.atol, request.rtol)
    say(report.table())
    if not report.ok:
        worst = report.worst()
        raise VerificationError(
            f"output {worst.output!r} differs from PyTorch at batch size "
            f"{worst.batch_size or 'unbatched'}: max abs err {worst.max_abs_err:.3e}, "
            f"max rel err {worst.max_rel_err:.3e} (atol {request.atol}, rtol {request.rtol}); "
            "nothing was written"
        )

    entries: dict[str, Any] = {}
    if request.quantize:
        holdout = None if labels is None else (request.declarations.metrics, labels)
        quantized = quantize_version(
            onnx_bytes,
            inputs,
            samples or inputs,
            batch_sizes,
            request.declarations.kinds,
            holdout,
            request.quantize_limits,
        )
        say(quantized.report.summary())
        say("int8 at each batch size against its answers one sample at a time:")
        say(quantized.parity.table())
        entries = {"quantization": quantized.report.to_json(), "fp32_parity": report.to_json()}
        onnx_bytes, expected, report = quantized.onnx_bytes, quantized.golden, quantized.parity
        session = session_for(onnx_bytes)

    data = _data_files(request, signature, session, samples, labels, say)
    data = replace(data, entries={**data.entries, **entries})
    files = _version_files(request, version, signature, onnx_bytes, inputs, expected, report, data)
    path = repo.publish(request.name, files, request.force)
    size = len(onnx_bytes) / 1024
    say(f"wrote {path} ({size:.1f} KiB model, {request.golden_samples} golden samples)")
    return ExportResult(request.name, version, path, signature, report)


def _torch_outputs(
    model: torch.nn.Module, inputs: dict[str, np.ndarray], max_batch_size: int
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """PyTorch's outputs for every golden sample, computed in batches Triton could form,
    and the output keys of a model that returns a mapping."""
    count = next(iter(inputs.values())).shape[0]
    if max_batch_size == 0:
        runs = [run_torch(model, {k: v[i] for k, v in inputs.items()}) for i in range(count)]
    else:
        runs = [
            run_torch(model, {k: v[i : i + max_batch_size] for k, v in inputs.items()})
            for i in range(0, count, max_batch_size)
        ]
    keys = runs[0][1]
    if any(run_keys != keys for _, run_keys in runs):
        raise UsageError("the model returned different output keys for different batches")
    join = np.stack if max_batch_size == 0 else np.concatenate
    return [join(parts) for parts in zip(*(outputs for outputs, _ in runs), strict=True)], keys


def _output_names(requested: Sequence[str], returned: Sequence[str] | int) -> tuple[str, ...]:
    """`--output` names, else the model's own keys, else OUTPUT__0, OUTPUT__1, ..."""
    count = returned if isinstance(returned, int) else len(returned)
    if not requested:
        if isinstance(returned, int):
            return tuple(f"OUTPUT__{i}" for i in range(count))
        for key in returned:
            check_tensor_name(key, "the model's output key")
        return tuple(returned)
    if len(requested) != count:
        raise UsageError(
            f"{len(requested)} --output name(s) given, but the model returns {count} output(s)"
        )
    return tuple(requested)


def _check_no_overlap(inputs: Sequence[TensorSpec], output_names: Sequence[str]) -> None:
    overlap = {s.name for s in inputs} & set(output_names)
    if overlap:
        raise UsageError(f"{sorted(overlap)[0]!r} is both an input and an output name")


def _check_declared_inputs(signature: Signature, declared: Sequence[TensorSpec]) -> None:
    for got, want in zip(signature.inputs, declared, strict=True):
        if got.dtype != want.dtype or got.dims != want.dims:
            raise UsageError(f"--input {want.describe()}: the exported graph has {got.describe()}")


def _check_same_signature(
    new: Signature, existing: Signature, repo: ModelRepository, name: str
) -> None:
    problems = new.differences(existing)
    if problems:
        path = repo.model_dir(name) / CONFIG
        raise UsageError(
            f"the new version's signature differs from {path}: {'; '.join(problems)}; "
            "export it under a new --name instead"
        )


@dataclass(frozen=True)
class DataFiles:
    """The holdout and the input profile of a version: files and manifest entries."""

    files: dict[str, bytes]
    entries: dict[str, Any]


def _data_files(
    request: ExportRequest,
    signature: Signature,
    session: onnxruntime.InferenceSession,
    samples: dict[str, np.ndarray] | None,
    labels: np.ndarray | None,
    say: Callable[[str], None],
) -> DataFiles:
    """Evaluate the declared metrics on the labelled holdout; profile the sample inputs."""
    declarations = request.declarations
    if samples is None:
        return DataFiles({}, manifest_entries(signature, declarations, None, None))
    count = len(next(iter(samples.values())))
    files: dict[str, bytes] = {}
    holdout = None
    if labels is not None:
        batch = request.options.max_batch_size or None
        outputs = run_onnxruntime(session, samples, batch)
        holdout = (count, evaluate(declarations.metrics, outputs, labels))
        files[HOLDOUT] = holdout_bytes(samples, labels)
        for name, value in holdout[1].items():
            say(
                f"holdout: {name} {declarations.metrics[name].describe()} {value['value']:.4f} "
                f"on {count} labelled samples (95% CI {value['low']:.4f} to {value['high']:.4f})"
            )
    variable = frozenset(s.name for s in request.inputs if VARIABLE in s.dims)
    profile = profile_inputs(samples, variable)
    files[PROFILE] = (json.dumps(profile.to_json()) + "\n").encode()
    return DataFiles(files, manifest_entries(signature, declarations, holdout, profile))


def _version_files(
    request: ExportRequest,
    version: int,
    signature: Signature,
    onnx_bytes: bytes,
    inputs: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    report: ParityReport,
    data: DataFiles,
) -> VersionFiles:
    golden = io.BytesIO()
    np.savez_compressed(golden, allow_pickle=False, **golden_arrays(inputs, expected))
    golden_bytes = golden.getvalue()
    config = model_config.build_config(request.name, signature, request.options, None)
    pinned = model_config.build_config(request.name, signature, request.options, [version])
    pinned_text = model_config.render(pinned)
    pinned_relative = f"configs/{model_config.pinned_config_name(version)}.pbtxt"
    manifest = {
        "format": FORMAT,
        "model": request.name,
        "version": version,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {
            "model": request.model,
            "weights": str(request.weights) if request.weights else None,
            "weights_sha256": sha256_file(request.weights) if request.weights else None,
            "samples": str(request.samples_file) if request.samples_file else None,
            "seed": request.seed,
        },
        "labels": dict(request.labels),
        "tools": {
            "modelcanary": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opset": request.opset,
        },
        "signature": signature_to_json(signature, request.options.max_batch_size),
        "serving": {
            "max_batch_size": request.options.max_batch_size,
            "dynamic_batching": request.options.dynamic_batching,
            "preferred_batch_sizes": list(request.options.preferred_batch_sizes),
            "max_queue_delay_us": request.options.max_queue_delay_us,
            "instances": request.options.instances,
            "kind": request.options.kind,
            "accelerator": request.options.accelerator,
            "model_config_name": model_config.pinned_config_name(version),
        },
        "parity": report.to_json(),
        **data.entries,
        "files": {
            f"{version}/{model_config.MODEL_FILENAME}": sha256_bytes(onnx_bytes),
            f"{version}/{GOLDEN}": sha256_bytes(golden_bytes),
            **{f"{version}/{name}": sha256_bytes(content) for name, content in data.files.items()},
            pinned_relative: sha256_bytes(pinned_text.encode()),
        },
    }
    return VersionFiles(
        version=version,
        files={
            model_config.MODEL_FILENAME: onnx_bytes,
            GOLDEN: golden_bytes,
            **data.files,
            MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode(),
        },
        config_text=model_config.render(config),
        pinned_config_text=pinned_text,
    )
