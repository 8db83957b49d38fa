"""The operator's probes (pure): liveness follows the tick loop, readiness the Lease.

Liveness fails once the tick loop has ended or has not gone round for `stalled_after_s`
(a tick stuck on a call that never returns: the kubelet restarts the pod, and a standby
takes the Lease meanwhile). Readiness says whether this replica acts: it holds the Lease
and renewed it within the Lease's duration (a leader whose renewals hang may already have
lost it), so the Service sends the Alertmanager webhook to the replica that ticks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

STALL_TICKS = 5  # the loop is stalled after this many tick intervals without going round
STALL_FLOOR_S = 60.0  # ... and never sooner: a tick of many rollouts may take a while


def stalled_after(tick_s: float) -> float:
    """The default stall limit for a tick interval."""
    return max(STALL_TICKS * tick_s, STALL_FLOOR_S)


class LoopPulse:
    """When the tick loop last went round (`beat`), and whether it ended (`end`)."""

    def __init__(self, stalled_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stalled_after_s, self.clock = stalled_after_s, clock
        self.last = clock()
        self.ended = False

    def beat(self) -> None:
        self.last = self.clock()

    def end(self) -> None:
        self.ended = True

    def problem(self) -> str | None:
        """Why the operator is not live (None while the loop goes round)."""
        if self.ended:
            return "the tick loop has ended"
        quiet = self.clock() - self.last
        if quiet > self.stalled_after_s:
            return (
                f"the tick loop has not gone round for {quiet:.0f} s "
                f"(stalled after {self.stalled_after_s:g} s)"
            )
        return None


def lease_problem(
    identity: str, lease: str, leading: bool, renewed_at: float | None, lease_s: float, now: float
) -> str | None:
    """Why this replica is not ready: it does not hold the Lease, or its last renewal is
    older than the Lease's duration (None: it acts)."""
    if not leading or renewed_at is None:
        return f"standby: {identity} does not hold the Lease {lease}"
    if now - renewed_at > lease_s:
        return (
            f"{identity} last renewed the Lease {lease} {now - renewed_at:.0f} s ago, "
            f"longer than its {lease_s:g} s: another replica may hold it"
        )
    return None
