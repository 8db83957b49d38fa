"""The tests' one wait: `until` a check holds, on the project's own poll loop
(modelcanary.waiting.wait_until), failing the test with a message naming what was awaited."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from modelcanary.waiting import wait_until

T = TypeVar("T")


def until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    every: float = 0.1,
    gone: Callable[[], str | None] = lambda: None,
    context: Callable[[], object] | None = None,
) -> T:
    """Call `check` until it returns something true, and return that. After `timeout`
    seconds fail with AssertionError: `what` (the failure, as in "never promoted"), the
    wait, the check's last value and `context()` (a log's tail). `gone` says why what is
    awaited can no longer come (a process exited: fail at once), or None while it may."""
    last: list[T] = []
    ended: list[str] = []

    def done() -> bool:
        if (why := gone()) is not None:
            ended.append(why)
            return True
        last[:] = [check()]
        return bool(last[0])

    if wait_until(done, timeout, every) and not ended:
        return last[0]
    if ended:
        failure = f"{what}: {ended[0]}"
    else:
        failure = f"{what} (waited {timeout:g} s; the check last gave {last[0]!r:.300})"
    raise AssertionError(failure if context is None else f"{failure}\n{context()}")
