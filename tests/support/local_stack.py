"""A quiet local stack (`modelcanary up`) of digits (or another model) for a test module,
stopped after it, and steady load on its gateway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.local.stack import LocalStack, StackOptions


@contextmanager
def digits_stack(
    repo: Path, run_dir: Path, stable: int, versions: tuple[int, ...], model: str = "digits"
) -> Iterator[LocalStack]:
    """The stack serving VERSIONS of MODEL, STABLE taking all the traffic."""
    local = LocalStack(
        StackOptions(repo, model, stable, run_dir=run_dir, versions=versions), say=lambda line: None
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


@contextmanager
def steady_load(
    stack: LocalStack, repo: Path, model: str = "digits", rate: float = 30
) -> Iterator[BackgroundLoad]:
    """Open-loop load of MODEL's golden requests on the stack's gateway, stopped after."""
    traffic = BackgroundLoad(stack.urls["gateway"], model, request_bodies(repo, model), rate)
    traffic.start()
    try:
        yield traffic
    finally:
        traffic.stop()
