"""Counts since the rollout began: each request once, restarts and vanished series."""

from __future__ import annotations

import json
from dataclasses import asdict

from modelcanary.rollout.evidence import Baseline, advance, start
from modelcanary.rollout.ports import Counts, Observations, VersionStats


def seen(stable: Counts | None, canary: Counts | None) -> Observations:
    def stats(counts: Counts | None) -> VersionStats | None:
        return None if counts is None else VersionStats(10, 0, 0.01, counts)

    return Observations(stats(stable), stats(canary))


def test_counts_are_differences_since_the_start() -> None:
    base = start(seen(Counts(1000, 5, ((0.1, 900),), 1000), Counts(40, 1, ((0.1, 30),), 40)), 0)
    kept, evidence = advance(base, seen(Counts(1500, 6, ((0.1, 1380),), 1500),
                                        Counts(140, 3, ((0.1, 125),), 140)), 10)  # fmt: skip
    assert evidence.stable == Counts(500, 1, ((0.1, 480),), 500)
    assert evidence.canary == Counts(100, 2, ((0.1, 95),), 100)
    assert kept.stable == base.stable and kept.canary == base.canary  # unchanged baseline


def test_a_restarted_counter_counts_again_from_zero() -> None:
    base = start(seen(Counts(1000, 5), Counts(400, 4)), 0)
    kept, evidence = advance(base, seen(Counts(1100, 5), Counts(30, 1)), 10)
    assert evidence.canary == Counts(30, 1)  # the requests since the restart, not -370
    assert kept.canary == Counts(0, 0)


def test_a_canary_whose_series_vanished_served_nothing_while_stable_did() -> None:
    base = start(seen(Counts(1000, 5), Counts(0, 0)), 0)
    base, evidence = advance(base, seen(Counts(1500, 5), Counts(50, 0)), 10)
    assert evidence.stable_since_canary == 0  # the canary just received requests
    base, evidence = advance(base, seen(Counts(2000, 5), None), 20)  # crashed: no series
    assert evidence.canary == Counts(50, 0) and evidence.stable_since_canary == 500
    _, evidence = advance(base, seen(Counts(2600, 5), Counts(50, 0)), 35)  # back, but silent
    assert (evidence.stable_since_canary, evidence.stalled_s) == (1100, 25)


def test_the_baseline_survives_json() -> None:
    base = start(seen(Counts(1000, 5, ((0.1, 900),), 1000), None), 5)
    assert Baseline.from_json(json.loads(json.dumps(asdict(base)))) == base


def test_a_missing_stable_series_keeps_its_last_counters() -> None:
    """Issue 13 (found by the chaos tests): stable's series gone for a scrape must not move
    the mark back to the rollout's start and fake a stalled canary later."""
    base = start(seen(Counts(1000, 5), Counts(0, 0)), 0)
    base, _ = advance(base, seen(Counts(5000, 5), Counts(200, 0)), 10)
    base, evidence = advance(base, seen(None, Counts(260, 0)), 20)  # stable not scraped
    assert evidence.stable.requests == 4000 and evidence.stable_since_canary == 0
    _, evidence = advance(base, seen(Counts(5600, 5), Counts(300, 0)), 30)
    assert evidence.stable_since_canary == 0 and evidence.stable.requests == 4600
