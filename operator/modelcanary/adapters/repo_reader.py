"""Where the controller reads a version's exported files (manifest, golden samples,
labelled holdout): the port and its local backend, the model repository on disk.

Every data file is checked against the sha256 its manifest pins, so the checks before
traffic run on exactly what was exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelcanary.errors import ModelcanaryError, UsageError, one_line
from modelcanary.modelrepo.manifest import MANIFEST, Manifest, parse_manifest, sha256_bytes


class CheckUnavailable(ModelcanaryError):
    """A check before traffic could not run (files unreadable, a version not served):
    not a verdict."""


class RepositoryReader(Protocol):
    def read(self, model: str, version: str, name: str, sha256: str | None = None) -> bytes:
        """The file `name` of the version's directory; CheckUnavailable when it cannot.
        `sha256`: what its manifest pins, if it does (a reader may keep files by it)."""


@dataclass(frozen=True)
class LocalRepository:
    """A model repository on this machine's disk: ROOT/MODEL/VERSION/NAME."""

    root: Path

    def read(self, model: str, version: str, name: str, sha256: str | None = None) -> bytes:
        path = self.root / model / version / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CheckUnavailable(f"{path}: {one_line(exc)}") from None


def version_manifest(reader: RepositoryReader, model: str, version: str) -> Manifest:
    """The version's manifest; CheckUnavailable when it is missing or unreadable."""
    if not version.isdigit():
        raise CheckUnavailable(f"version {version!r} of {model} is not a number")
    try:
        return parse_manifest(
            reader.read(model, version, MANIFEST),
            f"{model}:{version} {MANIFEST}",
            model,
            int(version),
        )
    except UsageError as exc:
        raise CheckUnavailable(str(exc)) from None


def pinned_file(reader: RepositoryReader, manifest: Manifest, name: str) -> bytes:
    """A data file of the version, checked against the sha256 in its manifest."""
    pinned = manifest.files.get(f"{manifest.version}/{name}")
    data = reader.read(manifest.model, str(manifest.version), name, pinned)
    if pinned is not None and sha256_bytes(data) != pinned:
        raise CheckUnavailable(
            f"{manifest.model}:{manifest.version} {name} does not match the sha256 in its "
            "manifest (changed after export)"
        )
    return data
