"""Fault injection settings for a local model version: validated here, read by the backend.

A file `<faults_dir>/<model>/<version>.json` holding `{"error_ratio": 0.3, "latency_ms":
200}` makes the local Triton backend fail that share of the version's requests and delay
its answers, so Triton's own failure and latency metrics show a bad canary. No file, no
faults. Files are replaced atomically so the backend never reads half of one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from modelcanary.errors import UsageError
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


def fault_path(faults_dir: Path, model: str, version: int) -> Path:
    return faults_dir / model / f"{version}.json"


def set_faults(faults_dir: Path, model: str, version: int, spec: FaultSpec) -> Path:
    """Write (or, for an inactive spec, remove) the fault file of one version."""
    spec.validate()
    path = fault_path(faults_dir, model, version)
    if not spec.active:
        path.unlink(missing_ok=True)
        return path
    write_atomically(path, json.dumps(asdict(spec)))
    return path
