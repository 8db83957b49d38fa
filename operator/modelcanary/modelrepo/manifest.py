"""`manifest.json`: what was exported, from what, with which tools, and how well it matched.

Stored per version next to `model.onnx`; `repo verify` checks the repository against it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcanary.errors import UsageError, one_line
from modelcanary.modelrepo.holdout import Metric
from modelcanary.modelrepo.output_comparison import OutputKind, check_kind
from modelcanary.modelrepo.tensorspec import Signature, TensorSpec, dtype_by_name

MANIFEST = "manifest.json"
GOLDEN = "golden.npz"  # inputs/NAME and PyTorch's outputs/NAME for them
FORMAT = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def signature_to_json(signature: Signature, max_batch_size: int) -> dict[str, Any]:
    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": s.name, "dtype": s.dtype.name, "dims": list(s.dims)} for s in specs]

    return {
        "batched": signature.batched,
        "max_batch_size": max_batch_size,
        "inputs": tensors(signature.inputs),
        "outputs": tensors(signature.outputs),
    }


def signature_from_json(data: dict[str, Any]) -> Signature:
    def tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(t["name"], dtype_by_name(t["dtype"]), tuple(t["dims"])) for t in items
        )

    return Signature(
        inputs=tensors(data["inputs"]),
        outputs=tensors(data["outputs"]),
        batched=bool(data["batched"]),
    )


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of one version."""

    model: str
    version: int
    data: dict[str, Any]

    @property
    def files(self) -> dict[str, str]:
        """sha256 of every file, by path relative to the model directory."""
        return dict(self.data["files"])

    @property
    def signature(self) -> Signature:
        return signature_from_json(self.data["signature"])

    @property
    def max_batch_size(self) -> int:
        return int(self.data["signature"]["max_batch_size"])

    @property
    def atol(self) -> float:
        return float(self.data["parity"]["atol"])

    @property
    def rtol(self) -> float:
        return float(self.data["parity"]["rtol"])

    @property
    def batch_sizes(self) -> list[int]:
        return [int(b) for b in self.data["parity"]["batch_sizes"]]

    def output_kind(self, output: str) -> OutputKind | None:
        """The kind declared at export; None for manifests that predate kinds."""
        entry = self.data.get("outputs", {}).get(output)
        return (
            None
            if entry is None
            else check_kind(str(entry["kind"]), f"{self.model}:{self.version}")
        )

    def metric(self, output: str) -> Metric | None:
        """The holdout metric declared for an output, if any."""
        text = self.data.get("outputs", {}).get(output, {}).get("metric")
        return None if text is None else Metric.parse(str(text))

    @property
    def holdout_file(self) -> str | None:
        """The labelled holdout's file name in the version directory, if it has one."""
        return self.data["holdout"]["file"] if "holdout" in self.data else None

    @property
    def profile_file(self) -> str | None:
        """The input profile's file name in the version directory, if it has one."""
        return self.data["profile"]["file"] if "profile" in self.data else None


def read_manifest(path: Path, model: str, version: int) -> Manifest:
    """Read and sanity-check a manifest, naming the file and the missing key on error."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no manifest (was this version exported by modelcanary?)"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: not a readable manifest: {one_line(exc)}") from None
    return parse_manifest(text, str(path), model, version)


def parse_manifest(text: bytes, source: str, model: str, version: int) -> Manifest:
    """A manifest from its bytes, sanity-checked; errors name `source`."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source}: not a readable manifest: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: not a readable manifest: not a JSON object")
    for key in ("format", "files", "signature", "parity"):
        if key not in data:
            raise UsageError(f"{source}: manifest has no {key!r}")
    if data["format"] != FORMAT:
        raise UsageError(f"{source}: manifest format {data['format']} is not {FORMAT}")
    return Manifest(model=model, version=version, data=data)
