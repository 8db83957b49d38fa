"""`modelcanary repo verify`: re-check a repository against the manifests it holds.

For every selected version: each file's sha256 (the holdout and the input profile, when
declared, must be among them), the configs against the manifest's signature, and the
golden samples through ONNX Runtime within the export's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelcanary.errors import ModelcanaryError, UsageError, one_line
from modelcanary.modelrepo import model_config
from modelcanary.modelrepo.golden import split_golden
from modelcanary.modelrepo.manifest import GOLDEN, Manifest, sha256_file
from modelcanary.modelrepo.parity import check_parity, session_for
from modelcanary.modelrepo.repository import CONFIG, ModelRepository


@dataclass
class VersionCheck:
    """The outcome of verifying one version: problems found, and what was checked."""

    model: str
    version: int
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    samples: int = 0
    max_abs_err: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        label = f"{self.model}:{self.version}"
        if self.ok:
            return (
                f"ok    {label}: {self.files_checked} files match their sha256, "
                f"{self.samples} golden samples within tolerance "
                f"(max abs err {self.max_abs_err:.2e})"
            )
        return f"FAIL  {label}: " + "; ".join(self.problems)


def select(repo: ModelRepository, target: str | None) -> list[tuple[str, int]]:
    """The (model, version) pairs named by `NAME[:VERSION]`, or all of them."""
    if target is None:
        pairs = [(m, v) for m in repo.models() for v in repo.versions(m)]
        if not pairs:
            raise UsageError(f"{repo.root}: no models to verify")
        return pairs
    name, _, version_text = target.partition(":")
    if name not in repo.models():
        known = ", ".join(repo.models()) or "none"
        raise UsageError(f"{repo.root}: no model {name!r} (models: {known})")
    versions = repo.versions(name)
    if not version_text:
        return [(name, v) for v in versions]
    if not version_text.isdigit() or int(version_text) not in versions:
        raise UsageError(
            f"{repo.root}: model {name!r} has no version {version_text!r} "
            f"(versions: {', '.join(map(str, versions)) or 'none'})"
        )
    return [(name, int(version_text))]


def verify_version(repo: ModelRepository, name: str, version: int) -> VersionCheck:
    """Verify one version; problems are collected, not raised."""
    check = VersionCheck(name, version)
    try:
        manifest = repo.read_manifest(name, version)
    except ModelcanaryError as exc:
        check.problems.append(str(exc))
        return check
    _check_files(repo, manifest, check)
    if check.ok:
        _check_configs(repo, manifest, check)
    if check.ok:
        _check_golden(repo, manifest, check)
    return check


def _check_files(repo: ModelRepository, manifest: Manifest, check: VersionCheck) -> None:
    model_dir = repo.model_dir(manifest.model)
    for declared in (manifest.holdout_file, manifest.profile_file):
        if declared is not None and f"{manifest.version}/{declared}" not in manifest.files:
            check.problems.append(f"{declared} is declared but its sha256 is not in the manifest")
    for relative, expected in manifest.files.items():
        path = model_dir / relative
        if not path.is_file():
            check.problems.append(f"{relative} is missing")
            continue
        actual = sha256_file(path)
        check.files_checked += 1
        if actual != expected:
            check.problems.append(
                f"{relative} has sha256 {actual[:12]}…, the manifest says {expected[:12]}…"
            )


def _check_configs(repo: ModelRepository, manifest: Manifest, check: VersionCheck) -> None:
    want = manifest.signature
    paths = [
        repo.model_dir(manifest.model) / CONFIG,
        repo.pinned_config_path(manifest.model, manifest.version),
    ]
    for path in paths:
        try:
            config = model_config.parse(path.read_text(), str(path))
        except (OSError, ModelcanaryError) as exc:
            check.problems.append(str(exc) if isinstance(exc, ModelcanaryError) else one_line(exc))
            continue
        if config.name != manifest.model:
            check.problems.append(f"{path.name} names model {config.name!r}")
        label = str(path.relative_to(repo.model_dir(manifest.model)))
        problems = want.differences(model_config.signature_of(config), "the manifest", label)
        if problems:
            check.problems.append(f"{label} does not match the manifest: {'; '.join(problems)}")


def _check_golden(repo: ModelRepository, manifest: Manifest, check: VersionCheck) -> None:
    version_dir = repo.version_dir(manifest.model, manifest.version)
    try:
        with np.load(version_dir / GOLDEN, allow_pickle=False) as data:
            inputs, expected = split_golden({k: data[k] for k in data.files})
        session = session_for(Path(version_dir / model_config.MODEL_FILENAME))
        sizes = [b or None for b in manifest.batch_sizes]
        report = check_parity(session, inputs, expected, sizes, manifest.atol, manifest.rtol)
    except ModelcanaryError as exc:
        check.problems.append(str(exc))
        return
    except Exception as exc:
        check.problems.append(f"golden samples could not be run: {one_line(exc)}")
        return
    check.samples = report.samples
    check.max_abs_err = max(r.max_abs_err for r in report.results)
    for failure in report.failures:
        check.problems.append(
            f"golden output {failure.output!r} at batch size {failure.batch_size or 'unbatched'} "
            f"is off by {failure.max_abs_err:.3e} (atol {manifest.atol}, rtol {manifest.rtol})"
        )
