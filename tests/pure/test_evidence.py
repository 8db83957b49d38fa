"""The evidence ledger: each replica's requests counted once since the rollout began, however
replicas come, go and restart (issue 20)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from modelcanary.rollout.evidence import (
    MAX_SERIES,
    advance,
    is_ledger,
    open_ledger,
    unread,
    watch,
)
from modelcanary.rollout.ports import Counts, Observations, VersionStats
from modelcanary.rollout.state import RolloutState

Replicas = dict[str, Counts] | None


def seen(stable: Replicas, canary: Replicas = None) -> Observations:
    def stats(replicas: Replicas) -> VersionStats | None:
        return None if replicas is None else VersionStats(10, 0, 0.01, replicas)

    return Observations(stats(stable), stats(canary))


def n(requests: float, errors: float = 0) -> Counts:
    return Counts(requests, errors)


def test_counts_are_per_replica_differences_since_the_start() -> None:
    stable = {"a": Counts(1000, 5, ((0.1, 900),), 1000), "b": n(300)}
    ledger = open_ledger(None, seen(stable, {"c": Counts(40, 1, ((0.1, 30),), 40)}), 0)
    stable = {"a": Counts(1500, 6, ((0.1, 1380),), 1500), "b": n(350)}
    _, evidence = advance(ledger, seen(stable, {"c": Counts(140, 3, ((0.1, 125),), 140)}), 10)
    assert evidence.stable == Counts(550, 1, ((0.1, 480),), 500)
    assert evidence.canary == Counts(100, 2, ((0.1, 95),), 100)


def test_scaling_down_keeps_what_the_gone_replica_counted() -> None:
    """The summed counters dropped when a pod went away, and the judge took the drop for a
    restart: stable's whole history became evidence."""
    ledger = open_ledger(None, seen({"a": n(10_000), "b": n(10_000), "c": n(10_000)}), 0)
    ledger, evidence = advance(ledger, seen({"a": n(10_100), "b": n(10_100), "c": n(10_100)}), 10)
    assert evidence.stable.requests == 300
    ledger, evidence = advance(ledger, seen({"a": n(10_200)}), 20)  # b and c scaled away
    assert evidence.stable.requests == 400  # not 10_200: nothing from before the rollout
    _, evidence = advance(ledger, seen({"a": n(10_300)}), 30)
    assert evidence.stable.requests == 500


def test_scaling_up_counts_a_new_replica_from_zero() -> None:
    ledger = open_ledger(None, seen({"a": n(5000)}, {"x": n(10)}), 0)
    ledger, evidence = advance(ledger, seen({"a": n(5100)}, {"x": n(20), "y": n(7, 1)}), 10)
    assert evidence.canary == n(17, 1)  # y's 7 requests all came after the rollout began
    _, evidence = advance(ledger, seen({"a": n(5200)}, {"x": n(30), "y": n(12, 1)}), 20)
    assert evidence.canary == n(32, 1)


def test_a_restart_below_the_starting_value_counts_again_from_zero() -> None:
    ledger = open_ledger(None, seen({"a": n(1000)}, {"x": n(400, 4)}), 0)
    ledger, evidence = advance(ledger, seen({"a": n(1100)}, {"x": n(450, 4)}), 10)
    ledger, evidence = advance(ledger, seen({"a": n(1200)}, {"x": n(30, 1)}), 20)  # restarted
    assert evidence.canary == n(80, 1)  # 50 before the restart, 30 since: not -370, not 30


def test_a_restart_above_the_starting_value_loses_nothing() -> None:
    """The summed counter was compared with its value at the rollout's start: a restart
    whose new count had passed it went unseen, and the requests before it were lost."""
    ledger = open_ledger(None, seen({"a": n(100)}, {"x": n(100)}), 0)
    ledger, evidence = advance(ledger, seen({"a": n(200)}, {"x": n(900)}), 10)
    assert evidence.canary.requests == 800
    ledger, evidence = advance(ledger, seen({"a": n(300)}, {"x": n(150)}), 20)  # restarted
    assert evidence.canary.requests == 950  # 800 before, 150 since: above 100 all along


def test_a_gone_series_that_comes_back_continues_from_its_last_value() -> None:
    ledger = open_ledger(None, seen({"a": n(1000), "b": n(1000)}), 0)
    ledger, _ = advance(ledger, seen({"a": n(1100), "b": n(1050)}), 10)
    ledger, evidence = advance(ledger, seen({"a": n(1200)}), 20)  # b missed a scrape
    assert evidence.stable.requests == 250
    _, evidence = advance(ledger, seen({"a": n(1300), "b": n(1150)}), 30)
    assert evidence.stable.requests == 450  # b's 100 since it was last read, once


def test_a_prometheus_gap_changes_nothing_counted() -> None:
    ledger = open_ledger(None, seen({"a": n(1000)}, {"x": n(10)}), 0)
    ledger, _ = advance(ledger, seen({"a": n(1100)}, {"x": n(20)}), 10)
    gap = Observations(None, None, problem="Prometheus at http://prom:9090 is unreachable")
    ledger, evidence = advance(ledger, gap, 20)
    assert (evidence.stable.requests, evidence.canary.requests) == (100, 10)
    _, evidence = advance(ledger, seen({"a": n(1900)}, {"x": n(60)}), 200)
    assert (evidence.stable.requests, evidence.canary.requests) == (900, 50)


def test_a_restarted_controller_carries_on_from_the_ledger_in_the_state() -> None:
    ledger = open_ledger(
        None, seen({"a": n(1000), "b": n(500)}, {"x": Counts(5, 0, ((0.1, 4),), 5)}), 0
    )
    ledger, _ = advance(ledger, seen({"a": n(1200)}, {"x": Counts(50, 1, ((0.1, 45),), 50)}), 10)
    written = json.loads(json.dumps(RolloutState(step=0, baseline=ledger).to_json()))
    restored = RolloutState.from_json(written).baseline
    assert restored == ledger
    assert restored is not None
    _, evidence = advance(
        restored, seen({"a": n(1300), "b": n(600)}, {"x": Counts(80, 1, ((0.1, 70),), 80)}), 20
    )
    assert evidence.stable.requests == 400 and evidence.canary == Counts(75, 1, ((0.1, 66),), 75)


def merged(old: Any, patch: Any) -> Any:
    """A JSON merge patch (RFC 7386), as the API server applies a status write."""
    if not isinstance(patch, dict):
        return patch
    out = dict(old) if isinstance(old, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out


def test_the_ledger_reads_back_after_merge_patches_of_the_status() -> None:
    """Replicas that went away, and a silence that started over, leave no names behind in
    a status written as merge patches."""
    ledger = open_ledger(
        None, seen({f"pod-{i}": n(100) for i in range(MAX_SERIES)}, {"x": n(1)}), 0
    )
    status = RolloutState(step=0, baseline=ledger).to_json()
    for t in range(1, 6):
        replicas = {f"new-{t}-{i}": n(10) for i in range(MAX_SERIES)}
        ledger, _ = advance(ledger, seen(replicas, {"x": n(1 + t % 2)}), t)
        status = merged(status, RolloutState(step=0, baseline=ledger).to_json())
    assert RolloutState.from_json(json.loads(json.dumps(status))).baseline == ledger


def test_a_state_from_before_ledgers_opens_a_new_one() -> None:
    """A summed baseline cannot be split into replicas: the engine counts from now."""
    old = {
        "stable": {"requests": 1000, "errors": 5},
        "canary": {"requests": 0, "errors": 0},
        "canary_seen": {"requests": 0, "errors": 0},
    }
    assert not is_ledger(old)
    assert RolloutState.from_json({"step": 0, "baseline": old}).baseline is None


def test_the_ledger_keeps_a_bounded_number_of_series_and_their_counts() -> None:
    ledger = open_ledger(None, seen({"a": n(0)}), 0)
    for i in range(3 * MAX_SERIES):  # a replica replaced every tick, each serving 10
        ledger, evidence = advance(ledger, seen({"a": n(i + 1), f"pod-{i}": n(10)}), i + 1)
    assert len(ledger.stable.series) <= MAX_SERIES
    assert evidence.stable.requests == 3 * MAX_SERIES * 11
    assert len(json.dumps(asdict(ledger))) < 20_000


def test_the_first_step_needs_real_counters() -> None:
    unreachable = Observations(None, None, problem="Prometheus at http://prom is unreachable")
    assert unread(unreachable) == "Prometheus at http://prom is unreachable"
    assert unread(seen(None, {"x": n(3)})) == "no stable counters in Prometheus yet"
    assert unread(seen({"a": n(3)})) is None  # a canary that never served: no series


def test_series_seen_before_the_first_step_never_count_their_past() -> None:
    """The canary served mirrored requests while shadowing; its series missed the scrape
    at the first step. Counted from zero, its whole past would be evidence."""
    watched = watch(None, seen({"a": n(1000)}, {"x": n(300, 30)}), 0)
    watched = watch(watched, seen({"a": n(1100)}, {"x": n(350, 35)}), 10)
    ledger = open_ledger(watched, seen({"a": n(1200)}), 20)  # x not scraped just now
    _, evidence = advance(ledger, seen({"a": n(1300)}, {"x": n(360, 35)}), 30)
    assert evidence.canary == n(10, 0) and evidence.stable.requests == 100


def test_a_silent_canary_is_counted_in_stable_requests_across_offset_scrapes() -> None:
    """60 s scrapes, stable's 30 s after the canary's, ticks every 10 s: a healthy canary at
    5% of 40 req/s must never look silent (issue 20 item 3), a crashed one must."""
    stable_rate, canary_rate = 38.0, 2.0
    ledger = open_ledger(None, seen({"a": n(0)}, {"x": n(0)}), 0)
    worst = 0.0
    for t in range(10, 1200, 10):
        stable_at = (t - 30) // 60 * 60 + 30  # stable scraped at 30, 90, 150, ...
        canary_at = t // 60 * 60  # the canary at 0, 60, 120, ...
        ledger, evidence = advance(
            ledger, seen({"a": n(stable_rate * stable_at)}, {"x": n(canary_rate * canary_at)}), t
        )
        worst = max(worst, evidence.stable_since_canary)
    assert worst == 0  # what stable served since the canary's last scrape is not silence
    for t in range(1200, 1400, 10):  # the canary crashed at 1200: its series are gone
        stable_at = (t - 30) // 60 * 60 + 30
        ledger, evidence = advance(ledger, seen({"a": n(stable_rate * stable_at)}), t)
    assert evidence.stable_since_canary >= stable_rate * 60
