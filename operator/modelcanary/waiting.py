"""The one poll-until loop: servers coming up, targets scraped, alerts resolved."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(
    done: Callable[[], object],
    timeout: float,
    every: float = 0.05,
    stop: threading.Event | None = None,
) -> bool:
    """Call `done` until it returns something true (True), or `timeout` seconds pass or
    `stop` is set (False). `done` is always called at least once."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return True
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return False
        if stop is not None:
            stop.wait(every)
        else:
            time.sleep(every)
