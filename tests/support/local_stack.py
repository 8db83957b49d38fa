"""A quiet local stack (`modelcanary up`) of digits (or another model) for a test module,
stopped after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelcanary.local.stack import LocalStack, StackOptions


@contextmanager
def digits_stack(
    repo: Path, run_dir: Path, stable: int, versions: tuple[int, ...], model: str = "digits"
) -> Iterator[LocalStack]:
    """The stack serving VERSIONS of MODEL, STABLE taking all the traffic."""
    local = LocalStack(StackOptions(repo, model, stable, run_dir=run_dir, versions=versions),
                       say=lambda line: None)  # fmt: skip
    local.start()
    try:
        yield local
    finally:
        local.stop()
