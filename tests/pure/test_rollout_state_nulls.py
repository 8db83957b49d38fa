"""A state read back from a real API server, which drops null values inside lists."""

from __future__ import annotations

from modelcanary.rollout.judge import Check
from modelcanary.rollout.state import LastAnalysis, RolloutState, Transition


def test_a_check_whose_null_value_was_dropped_reads_back_as_none() -> None:
    state = RolloutState(
        phase="Progressing", step=0, weight=20,
        history=(Transition(1.0, "start", "Progressing", 0, 20, "step 1"),),
        analysis=LastAnalysis(
            2.0, "inconclusive", (Check("latency_p99_s", None, 0.5, 0, "inconclusive"),), (),
            "waiting",
        ),
    )  # fmt: skip
    stored = state.to_json()
    del stored["analysis"]["checks"][0]["value"]  # what a merge-patch of null leaves
    assert RolloutState.from_json(stored) == state
