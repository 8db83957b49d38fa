"""The heartbeat of holding rollouts: a status write per tick budget, the oldest first
(and the budget of weight changes per tick, rollbacks not counted).

A tick that changes nothing but a rollout's numbers writes no status; its status is written
again (the heartbeat, so that `kubectl canary status` shows recent checks) once its last
write is HEARTBEAT_S old. With many rollouts, those writes would be most of a tick (about
290 writes per tick at 1,000 rollouts): a tick makes at most `budget(tick_s)` of them, to
the rollouts whose status is the oldest, and the others wait for a later tick. A rollout's
status is so written at least every HEARTBEAT_S plus one tick per `budget(tick_s)` holding
rollouts; anything else (a step, a failure, an intent, a new verdict) is written at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

HEARTBEAT_S = 30.0  # a holding rollout's status is at least this old before it is written
HEARTBEATS_PER_S = 20.0  # heartbeat writes per second of tick period, at most
# weight changes per second of tick period, at most (each is three writes: the state before
# and after, and the route); the others wait for a later tick, rollbacks never
MOVES_PER_S = 20.0


def budget(tick_s: float, per_s: float = HEARTBEATS_PER_S) -> int:
    """The heartbeat writes (or with MOVES_PER_S, the weight changes) one tick of TICK_S
    may make."""
    return max(1, math.ceil(per_s * tick_s))


def saved_at(body: Mapping[str, Any]) -> float | None:
    """When a ModelCanary's status was last written by a tick (the time of its checks),
    read from the body without parsing its state: right after a restart too."""
    analysis = ((body.get("status") or {}).get("state") or {}).get("analysis") or {}
    at = analysis.get("at")
    return float(at) if isinstance(at, int | float) else None


def fresh_since(
    saved_at: Iterable[float], now: float, budget: int, every_s: float = HEARTBEAT_S
) -> float:
    """The moment after which a saved status needs no heartbeat this tick: at most BUDGET
    of the statuses SAVED_AT (when each was last written) are older, the oldest first, and
    none written in the last EVERY_S. (Statuses written at the very same moment would be
    due together; a tick writes them one after another.)"""
    due = sorted(at for at in saved_at if at <= now - every_s)
    return due[budget - 1] if len(due) > budget else now - every_s
