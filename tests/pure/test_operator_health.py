"""The operator's probes, on an injected clock: liveness follows the tick loop's pulse,
readiness whether the replica holds the Lease and renewed it in time."""

from __future__ import annotations

from typing import Any, cast

import pytest

from modelcanary.kube.health import LoopPulse, lease_problem, stalled_after
from modelcanary.kube.leader import LeaseElector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_that_goes_round_is_live_and_one_that_stalls_is_not() -> None:
    clock = Clock()
    pulse = LoopPulse(5.0, clock)
    for _ in range(10):  # a round every tick
        clock.now += 1.0
        pulse.beat()
        assert pulse.problem() is None
    clock.now += 5.0  # exactly the limit: still live
    assert pulse.problem() is None
    clock.now += 0.5
    assert pulse.problem() == "the tick loop has not gone round for 6 s (stalled after 5 s)"
    pulse.beat()  # it went round again (the call it was stuck on returned)
    assert pulse.problem() is None


def test_a_loop_that_ended_is_not_live_whenever_it_last_went_round() -> None:
    clock = Clock()
    pulse = LoopPulse(5.0, clock)
    pulse.end()
    assert pulse.problem() == "the tick loop has ended"


@pytest.mark.parametrize(("tick_s", "limit_s"), [(10.0, 60.0), (1.0, 60.0), (30.0, 150.0)])
def test_the_default_stall_limit_is_five_ticks_and_at_least_a_minute(
    tick_s: float, limit_s: float
) -> None:
    assert stalled_after(tick_s) == limit_s


# a table: one case per line, read across
# fmt: off
READINESS_CASES = [
    (True, 100.0, 110.0, None),
    (True, 100.0, 115.0, None),  # the Lease's duration: still its own
    (True, 100.0, 116.0, "a last renewed the Lease op 16 s ago, longer than its 15 s: "
                         "another replica may hold it"),
    (False, None, 110.0, "standby: a does not hold the Lease op"),
]
# fmt: on


@pytest.mark.parametrize(("leading", "renewed_at", "now", "problem"), READINESS_CASES)
def test_readiness_is_holding_the_lease_renewed_in_time(
    leading: bool, renewed_at: float | None, now: float, problem: str | None
) -> None:
    assert lease_problem("a", "op", leading, renewed_at, 15, now) == problem


def test_the_elector_is_ready_only_while_its_renewal_is_fresh() -> None:
    clock = Clock()
    elector = LeaseElector(cast(Any, None), "ns", "op", "a", lease_s=15, clock=clock)
    assert elector.not_ready() == "standby: a does not hold the Lease op"
    elector.leading, elector.renewed_at = True, clock.now  # as a renewal that succeeded
    assert elector.not_ready() is None
    clock.now += 20  # its renewals hang: the Lease may be another replica's by now
    assert elector.not_ready() is not None
