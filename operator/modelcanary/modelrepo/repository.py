"""A Triton model repository on disk, and the atomic publication of a new version.

Layout of one model:

    REPO/NAME/config.pbtxt          serves every version present (local side-by-side)
    REPO/NAME/configs/v<N>.pbtxt    pins version N (cluster: --model-config-name=v<N>)
    REPO/NAME/<N>/model.onnx
    REPO/NAME/<N>/golden.npz        sample inputs and PyTorch's outputs for them
    REPO/NAME/<N>/manifest.json     sha256 of every file, versions, signature, parity

A version is staged in a directory beside the repository (same file system, not inside
it, so a Triton server polling the repository never sees it) and moved into place with
renames. Any failure, or Ctrl-C, before the last rename puts every file back as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from modelcanary.errors import UsageError
from modelcanary.modelrepo import model_config
from modelcanary.modelrepo.manifest import MANIFEST, Manifest, read_manifest

CONFIG = "config.pbtxt"
CONFIGS_DIR = "configs"
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_model_name(name: str) -> str:
    """Return the name if it can be a model directory and a Triton model name."""
    if not _MODEL_NAME_RE.match(name) or name in (".", ".."):
        raise UsageError(
            f"--name {name!r} is not a valid model name: use letters, digits, '_', '.', '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return name


@dataclass(frozen=True)
class VersionFiles:
    """Everything one export writes: the version's files and the two configs."""

    version: int
    files: dict[str, bytes]  # relative to the version directory
    config_text: str  # config.pbtxt
    pinned_config_text: str  # configs/v<N>.pbtxt


class ModelRepository:
    """Read access to a repository, and atomic publication of versions."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def model_dir(self, name: str) -> Path:
        return self.root / name

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / name / str(version)

    def pinned_config_path(self, name: str, version: int) -> Path:
        filename = model_config.pinned_config_name(version) + ".pbtxt"
        return self.root / name / CONFIGS_DIR / filename

    def models(self) -> list[str]:
        """Model directories (those with a config.pbtxt), sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG).is_file())

    def versions(self, name: str) -> list[int]:
        """Numeric version directories of a model, ascending."""
        directory = self.model_dir(name)
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())

    def next_version(self, name: str) -> int:
        versions = self.versions(name)
        return versions[-1] + 1 if versions else 1

    def read_config(self, name: str) -> mc.ModelConfig | None:
        """The parsed config.pbtxt of a model, or None for a model not yet in the repo."""
        path = self.model_dir(name) / CONFIG
        if not path.is_file():
            return None
        return model_config.parse(path.read_text(), str(path))

    def read_manifest(self, name: str, version: int) -> Manifest:
        return read_manifest(self.version_dir(name, version) / MANIFEST, name, version)

    def check_writable(self) -> None:
        """Raise a UsageError unless versions can be published here: the repository is a
        directory (or can be made one), and it and its parent, where versions are staged,
        take new files. An export checks this before it does any work."""
        root = self.root.resolve()
        existing = next(p for p in (root, *root.parents) if p.exists())
        if not existing.is_dir():
            raise UsageError(f"--repo {self.root}: {existing} is not a directory")
        staged_in = root.parent if root.parent.exists() else existing
        for directory in dict.fromkeys((existing, staged_in)):
            try:
                _probe(directory)
            except OSError as exc:
                raise UsageError(
                    f"--repo {self.root}: cannot write to {directory}: {exc.strerror or exc}"
                ) from None

    def publish(self, name: str, files: VersionFiles, force: bool) -> Path:
        """Move a fully written version into the repository; all or nothing."""
        try:
            return self._publish(name, files, force)
        except OSError as exc:
            raise UsageError(
                f"--repo {self.root}: cannot publish version {files.version}: "
                f"{exc.strerror or exc}; the repository is as it was"
            ) from None

    def _publish(self, name: str, files: VersionFiles, force: bool) -> Path:
        target = self.version_dir(name, files.version)
        if target.exists() and not force:
            raise UsageError(
                f"{target} already exists; pass --force to replace version {files.version}"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with _staging(self.root) as staging:
            model_stage = staging / name
            version_stage = model_stage / str(files.version)
            version_stage.mkdir(parents=True)
            for relative, data in files.files.items():
                _write(version_stage / relative, data)
            pinned = model_stage / CONFIGS_DIR / self.pinned_config_path(name, files.version).name
            _write(pinned, files.pinned_config_text.encode())
            _write(model_stage / CONFIG, files.config_text.encode())
            if not self.model_dir(name).exists():
                # A new model appears whole, with one rename.
                model_stage.rename(self.model_dir(name))
            else:
                _swap_into(self.model_dir(name), model_stage, files.version, staging)
        return target


@contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A scratch directory on the repository's file system, removed afterwards."""
    parent = root.resolve().parent
    path = Path(tempfile.mkdtemp(prefix=f".{root.name}.staging-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _probe(directory: Path) -> None:
    """Create and remove a file in the directory (OSError when it takes none)."""
    tempfile.TemporaryFile(dir=directory).close()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _swap_into(model_dir: Path, model_stage: Path, version: int, staging: Path) -> None:
    """Move the staged version and configs into an existing model directory.

    Every replaced file or directory is first moved aside into the staging directory,
    so an exception (KeyboardInterrupt included) can move everything back.
    """
    backup = staging / "previous"
    backup.mkdir()
    moves: list[tuple[Path, Path]] = []  # (from, to) renames done so far, to undo

    def move(source: Path, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        source.rename(destination)
        moves.append((source, destination))

    pinned_name = model_config.pinned_config_name(version) + ".pbtxt"
    replacements = [
        (model_stage / str(version), model_dir / str(version)),
        (model_stage / CONFIGS_DIR / pinned_name, model_dir / CONFIGS_DIR / pinned_name),
        (model_stage / CONFIG, model_dir / CONFIG),
    ]
    configs_dir = model_dir / CONFIGS_DIR
    configs_existed = configs_dir.exists()
    try:
        for index, (new, current) in enumerate(replacements):
            if current.exists():
                move(current, backup / str(index))
            move(new, current)
    except BaseException:
        for source, destination in reversed(moves):
            if destination.exists() and not source.exists():
                destination.rename(source)
        if not configs_existed and configs_dir.is_dir() and not any(configs_dir.iterdir()):
            configs_dir.rmdir()
        raise
