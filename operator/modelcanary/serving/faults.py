"""Fault injection settings for a local model version: validated here, read by the backend.

A file `<faults_dir>/<model>/<version>.json` holding `{"error_ratio": 0.3, "latency_ms":
200}` makes the local Triton backend fail that share of the version's requests and delay
its answers, so Triton's own failure and latency metrics show a bad canary. No file, no
faults. Files are replaced atomically so the backend never reads half of one. The command
accepts only a version the running Triton serves (`check_served`), and a model name that
cannot leave the fault directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from modelcanary.errors import UsageError, one_line
from modelcanary.files import write_atomically


@dataclass(frozen=True)
class FaultSpec:
    """What to inject into one version: a share of failed requests and added latency."""

    error_ratio: float = 0.0
    latency_ms: float = 0.0

    def validate(self) -> FaultSpec:
        if not 0.0 <= self.error_ratio <= 1.0:
            raise UsageError(f"--error-ratio {self.error_ratio} must be between 0 and 1")
        if self.latency_ms < 0:
            raise UsageError(f"--latency-ms {self.latency_ms} must not be negative")
        return self

    @property
    def active(self) -> bool:
        return self.error_ratio > 0 or self.latency_ms > 0

    def describe(self) -> str:
        if not self.active:
            return "no faults"
        return f"failing {self.error_ratio:.0%} of requests, adding {self.latency_ms:g} ms"


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")  # as `export --name` allows


def check_fault_target(model: str, version: int) -> None:
    """A model name that is a plain directory name, and a positive version."""
    if not MODEL_NAME.fullmatch(model) or model in (".", ".."):
        raise UsageError(f"--model {model!r} is not a valid model name")
    if version < 1:
        raise UsageError(f"--version {version} must be a positive integer")


def fault_path(faults_dir: Path, model: str, version: int) -> Path:
    check_fault_target(model, version)
    return faults_dir / model / f"{version}.json"


def check_served(
    triton: str, model: str, version: int, stack_models: Sequence[str] = (), timeout: float = 5.0
) -> None:
    """Raise a UsageError unless the Triton at `triton` serves the version, ready; the
    error names what the stack's models (`stack_models`) serve."""
    url = f"{triton.rstrip('/')}/v2/models/{model}/versions/{version}/ready"
    try:
        ready = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise UsageError(
            f"Triton at {triton} does not answer ({one_line(exc)}); is the stack running?"
        ) from None
    if ready.status_code != 200:
        served = _served(triton, [*stack_models, model], timeout)
        raise UsageError(
            f"Triton at {triton} does not serve {model} version {version} (it serves {served})"
        )


def _served(triton: str, models: Sequence[str], timeout: float) -> str:
    """What Triton serves of these models, e.g. `digits 1, 2`, from their metadata (its
    repository index is kept to the stack's own key)."""
    found = []
    for name in dict.fromkeys(models):
        try:
            response = httpx.get(f"{triton.rstrip('/')}/v2/models/{name}", timeout=timeout)
            versions = response.json().get("versions") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return "an unknown set of models"
        if isinstance(versions, list) and versions:
            ordered = sorted(map(str, versions), key=lambda v: v.zfill(12))
            found.append(f"{name} {', '.join(ordered)}")
    return "; ".join(found) or "nothing"


def set_faults(faults_dir: Path, model: str, version: int, spec: FaultSpec) -> Path:
    """Write (or, for an inactive spec, remove) the fault file of one version."""
    spec.validate()
    path = fault_path(faults_dir, model, version)
    if not spec.active:
        path.unlink(missing_ok=True)
        return path
    write_atomically(path, json.dumps(asdict(spec)))
    return path
