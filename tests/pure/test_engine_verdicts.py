"""The engine judges a rollout again only when what the judge reads changed: the counts
(its evidence), the observations, the spec, the weight. Ticks come more often than the
rules that move the counts are evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from modelcanary.rollout import engine as engine_module
from modelcanary.rollout.engine import Engine
from modelcanary.rollout.judge import judge
from modelcanary.rollout.ports import Counts, Observations, RolloutKey
from tests.pure.test_rollout_engine import HEALTHY, Clock, MemoryStore, Notifier, make


@dataclass
class StillSource:
    """Prometheus whose counters move only when the test says so."""

    moves: int = 1
    asked: list[int] = field(default_factory=list)

    def observe(self, rollouts: Sequence[RolloutKey]) -> dict[RolloutKey, Observations]:
        self.asked.append(len(rollouts))
        seen = replace(
            HEALTHY,
            stable=replace(HEALTHY.stable, replicas={"a": Counts(500.0 * self.moves, 0.0)}),
            canary=replace(HEALTHY.canary, replicas={"b": Counts(100.0 * self.moves, 0.0)}),
        )
        return {key: seen for key in rollouts}


def test_a_verdict_is_judged_again_only_when_the_counts_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judged: list[Any] = []

    def counting(*given: Any) -> Any:
        judged.append(given)
        return judge(*given)

    monkeypatch.setattr(engine_module, "judge", counting)
    source, clock, store = StillSource(), Clock(), MemoryStore()
    engine = Engine(source, Notifier(), clock=clock)
    rollout = make(store)
    engine.tick([rollout])  # starts: the ledger opens
    engine.tick([rollout])
    before = len(judged)
    verdicts = []
    for _ in range(3):  # nothing moved: the same verdict, not judged again
        clock.now += 1
        verdicts.append(engine.tick([rollout])[0].state.analysis)
    assert len(judged) == before
    assert store.state is not None and store.state.analysis is not None
    assert {v.checks for v in verdicts if v is not None} == {store.state.analysis.checks}
    source.moves += 1  # a rule evaluation: the counts grew
    clock.now += 1
    engine.tick([rollout])
    assert len(judged) == before + 1
    fresh = judge(*judged[-1])
    assert store.state.analysis.checks == fresh.checks
