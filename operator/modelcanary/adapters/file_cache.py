"""Files read from a model store, kept on disk by URI and content, so that the checks
before traffic (run on every tick while a rollout waits for them) download each version's
files once instead of on every tick.

A file is kept under its URI and the sha256 its manifest pins: a version exported again
pins other bytes and is read again; a kept file whose bytes no longer match is dropped.
The directory is bounded: past `max_bytes`, the least recently used files go first. A
cache that cannot write (a full or read-only disk) only means reading again.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelcanary.modelrepo.manifest import sha256_bytes

MAX_BYTES = 1 << 30  # the operator's share of its pod's /tmp (an emptyDir)


@dataclass(frozen=True)
class FileCache:
    root: Path
    max_bytes: int = MAX_BYTES

    def _path(self, uri: str, sha256: str) -> Path:
        return self.root / f"{sha256_bytes(uri.encode())[:32]}-{sha256}"

    def get(self, uri: str, sha256: str) -> bytes | None:
        """The kept bytes of the file at `uri` with this sha256, or None."""
        path = self._path(uri, sha256)
        try:
            data = path.read_bytes()
            if sha256_bytes(data) != sha256:  # damaged on disk
                path.unlink()
                return None
            os.utime(path)  # recently used
        except OSError:
            return None
        return data

    def put(self, uri: str, sha256: str, data: bytes) -> None:
        """Keep the bytes of the file at `uri` (their sha256 checked by the caller)."""
        if len(data) > self.max_bytes:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".part-", delete=False) as part:
                part.write(data)
            Path(part.name).replace(self._path(uri, sha256))
            self._trim()
        except OSError:
            return

    def _trim(self) -> None:
        """Least recently used files out until the directory is within its bound."""
        kept = []
        for path in self.root.iterdir():
            stat = path.stat()
            kept.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in kept)
        for _, size, path in sorted(kept):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


@functools.cache
def operator_cache() -> FileCache:
    """The operator's cache, in the temporary directory (its pod's /tmp)."""
    return FileCache(Path(tempfile.gettempdir()) / "modelcanary-files")
