"""The local stack under steady load, with the demo's rollout driver: what bench_rollback
and bench_shadow run their rollouts on."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.local.demo import MODEL, SERVED, Demo
from modelcanary.local.stack import LocalStack, StackOptions


@contextmanager
def demo_under_load(repo: Path, rate: float, prefix: str) -> Iterator[tuple[Demo, dict[str, str]]]:
    """The demo's model and versions served from REPO (version 1 stable), RATE requests/s
    through the gateway, and the driver of the demo's rollouts; the stack's URLs. Stopped
    after the block."""
    with tempfile.TemporaryDirectory(prefix=prefix) as run:
        run_dir = Path(run)
        options = StackOptions(repo, MODEL, stable=1, run_dir=run_dir, versions=SERVED)
        stack = LocalStack(options, print)
        urls = stack.start()
        load = BackgroundLoad(urls["gateway"], MODEL, request_bodies(repo, MODEL), rate)
        try:
            load.start()
            time.sleep(3)
            demo = Demo(repo, run_dir, rate, say=lambda line: None)
            demo.stop = threading.Event()
            yield demo, urls
        finally:
            load.stop()
            stack.stop()
