"""The manifests the comparator reads: output kinds, tolerances, the reference profile.

Read from the model repository when a comparison is configured, never per request. The
profile must be the file the manifest pins (sha256), as for `modelcanary compare`.
"""

from __future__ import annotations

from pathlib import Path

from modelcanary.errors import UsageError
from modelcanary.modelrepo.drift import InputProfile
from modelcanary.modelrepo.holdout_store import read_profile
from modelcanary.modelrepo.manifest import MANIFEST, Manifest, read_manifest, sha256_file
from modelcanary.shadow.pairs import VersionPair


def version_pair(repo: Path, model: str, stable: str, canary: str) -> VersionPair:
    """Kinds (the canary's, else stable's), the canary's tolerances and stable's profile."""
    a, b = (_manifest(repo, model, v) for v in (stable, canary))
    profile = None
    if a.profile_file is not None:
        path = repo / model / stable / a.profile_file
        if not path.is_file() or sha256_file(path) != a.files.get(f"{stable}/{a.profile_file}"):
            raise UsageError(
                f"{path} does not match the sha256 in its manifest; run modelcanary repo verify"
            )
        profile = read_profile(path)
    return pair_of(a, b, profile)


def pair_of(stable: Manifest, canary: Manifest, profile: InputProfile | None) -> VersionPair:
    """What two manifests (and stable's checked profile) say about comparing them."""
    names = [spec.name for spec in canary.signature.outputs]
    kinds = {
        n: k for n in names if (k := canary.output_kind(n) or stable.output_kind(n)) is not None
    }
    return VersionPair(kinds, canary.atol, canary.rtol, profile)


def _manifest(repo: Path, model: str, version: str) -> Manifest:
    if not version.isdigit():
        raise UsageError(f"version {version!r} of {model} is not a repository version number")
    return read_manifest(repo / model / version / MANIFEST, model, int(version))
