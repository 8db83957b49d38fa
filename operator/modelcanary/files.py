"""Small file helpers shared by the commands: reading a text file given by a user, atomic
replacement and secret token files."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from modelcanary.errors import UsageError


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file named by an argument (`what`, e.g. `-f canary.yaml`), or a
    UsageError that says why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise UsageError(f"{what}: {exc.strerror or exc}") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def token_file(path: Path, what: str = "token file") -> str:
    """The bearer token in the file, or a new random one written there (mode 0600)."""
    if path.is_file():
        token = path.read_text().strip()
        if not token:
            raise UsageError(f"{what} {path} is empty")
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return token
