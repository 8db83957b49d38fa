"""The heartbeat writes of holding rollouts, a budget per tick (modelcanary.kube.heartbeat):
the oldest statuses first, none younger than HEARTBEAT_S, and every status written again
within HEARTBEAT_S plus one tick per budget of rollouts."""

from __future__ import annotations

import math

from modelcanary.kube.heartbeat import HEARTBEAT_S, budget, fresh_since, saved_at


def test_at_most_the_budget_of_the_oldest_statuses_are_written() -> None:
    now = 1000.0
    saved = [now - age for age in (5, 31, 90, 45, 60, 29)]
    cutoff = fresh_since(saved, now, 2)
    assert sorted(now - at for at in saved if at <= cutoff) == [60, 90]


def test_none_younger_than_the_heartbeat_is_written_even_under_budget() -> None:
    now = 1000.0
    saved = [now - age for age in (5, 29.9, 31)]
    cutoff = fresh_since(saved, now, 10)
    assert [now - at for at in saved if at <= cutoff] == [31]
    assert fresh_since([], now, 10) == now - HEARTBEAT_S


def test_every_status_is_written_within_the_heartbeat_plus_one_tick_per_budget() -> None:
    """1,000 rollouts started in the same tick, then holding, ticks of 1 s: the writes per
    tick stay within the budget and no status gets older than the documented bound
    (statuses written at the same moment, to the microsecond, would all be due at once)."""
    rollouts, tick_s, per_tick = 1000, 1.0, budget(1.0)
    spread = tick_s / rollouts  # a tick's writes are taken one after another
    saved = [index * spread for index in range(rollouts)]
    bound = HEARTBEAT_S + math.ceil(rollouts / per_tick) * tick_s
    oldest, most = 0.0, 0
    for tick in range(1, 400):
        now = tick * tick_s
        cutoff = fresh_since(saved, now, per_tick)
        written = [index for index, at in enumerate(saved) if at <= cutoff]
        most = max(most, len(written))
        for order, index in enumerate(written):
            saved[index] = now + order * spread
        oldest = max(oldest, max(now - at for at in saved))
    assert most == per_tick
    assert oldest <= bound


def test_the_budget_follows_the_tick_period() -> None:
    assert budget(1.0) < budget(10.0)
    assert budget(0.01) == 1


def test_when_a_status_was_saved_is_read_from_the_body_without_parsing_its_state() -> None:
    """So the first tick after a restart budgets its heartbeats too."""
    assert saved_at({"status": {"state": {"analysis": {"at": 1700000000.5}}}}) == 1700000000.5
    for body in (
        {},
        {"status": None},
        {"status": {"state": {"analysis": None}}},
        {"status": {"state": {"analysis": {"at": "soon"}}}},
    ):
        assert saved_at(body) is None
