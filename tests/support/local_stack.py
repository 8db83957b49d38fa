"""A quiet local stack (`modelcanary up`) of digits for a test module, stopped after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelcanary.local.stack import LocalStack, StackOptions


@contextmanager
def digits_stack(
    repo: Path, run_dir: Path, stable: int, versions: tuple[int, ...]
) -> Iterator[LocalStack]:
    """The stack serving VERSIONS of digits, STABLE taking all the traffic."""
    local = LocalStack(StackOptions(repo, "digits", stable, run_dir=run_dir, versions=versions),
                       say=lambda line: None)  # fmt: skip
    local.start()
    try:
        yield local
    finally:
        local.stop()
