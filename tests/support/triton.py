"""A real Triton serving some versions of the example repository, for tests that need
their own set of versions (the stack tests' shared `triton` fixture serves 1 and 2)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer


@contextmanager
def serving_digits(
    repo: Path, home: TritonHome, run_dir: Path, versions: Sequence[int]
) -> Iterator[str]:
    """Triton serving these digits versions of REPO until the block ends; its HTTP URL."""
    with TritonServer(repo, run_dir, home) as server:
        endpoints = server.start()
        server.load("digits", list(versions))
        yield endpoints.http
