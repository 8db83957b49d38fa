"""Numeric outputs in shadow (issue 22): the spec's tolerance, the judge's sequential test
of the share of pairs outside it, the shadow phase ending on evidence, and the comparator
counting pairs within the tolerance it is given. Pure, table-driven."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from modelcanary.errors import UsageError
from modelcanary.local.demo import shadow_agreement
from modelcanary.rollout.evidence import shadow_since
from modelcanary.rollout.judge import Check, Verdict, judge
from modelcanary.rollout.ports import NumericCounts, Observations, ShadowCounts, VersionStats
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.state import LastAnalysis, RolloutState
from modelcanary.rollout.stepper import decide
from modelcanary.shadow.pairs import (
    PARITY_MULTIPLE,
    Incomparable,
    Tolerance,
    VersionPair,
    compare_answers,
)

SEEN = Observations(stable=VersionStats(1000, 2, 0.1), canary=VersionStats(200, 1, 0.11))
T0 = 1_700_000_000.0


def spec(**shadow: object) -> RolloutSpec:
    data = {"model": "price", "stable": {"version": "1"}, "canary": {"version": "2"}}
    return parse_spec({**data, "shadow": {"minSamples": 200, **shadow}}, "test")


S = spec()


def numeric(pairs: float, within: float, *more: NumericCounts) -> ShadowCounts:
    """A regression model's counters: no classification output."""
    outputs = (NumericCounts("price", pairs, within), *more)
    return ShadowCounts(0, 0, sum(n.pairs for n in outputs), outputs, classifies=False)


def check(verdict: Verdict, name: str = "numeric_tolerance") -> Check:
    return next(c for c in verdict.checks if c.name == name)


# -- the spec ----------------------------------------------------------------------------


def test_the_numeric_fields_default_to_the_export_tolerance_and_five_percent() -> None:
    assert (S.shadow.numeric.atol, S.shadow.numeric.rtol) == (None, None)  # derived
    assert S.shadow.numeric.max_outside == 0.05
    given = spec(numeric={"atol": 0.01, "rtol": 0.05, "maxOutside": 0.1}).shadow.numeric
    assert (given.atol, given.rtol, given.max_outside) == (0.01, 0.05, 0.1)


BAD_NUMERIC_FIELDS = [
    ({"atol": -1}, "shadow.numeric.atol: Input should be greater than or equal to 0"),
    ({"rtol": "wide"}, "shadow.numeric.rtol: Input should be a valid number"),
    ({"maxOutside": 1}, "shadow.numeric.maxOutside: Input should be less than 1"),
    ({"maxOutside": 0}, "shadow.numeric.maxOutside: Input should be greater than 0"),
    ({"tolerance": 0.1}, "shadow.numeric.tolerance: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("numeric", "message"), BAD_NUMERIC_FIELDS)
def test_bad_numeric_fields_get_one_line(numeric: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as error:
        spec(numeric=numeric)
    assert message in str(error.value) and "\n" not in str(error.value)


# -- the judge ---------------------------------------------------------------------------


TOLERANCE_CASES = [
    (8, 0, "fail"),  # every prediction moved: a handful of pairs is evidence enough
    (200, 0, "fail"),
    (200, 200, "pass"),  # retrained-alike: every pair within
    (200, 190, "pass"),  # 5% outside: at the limit, no evidence above it
    (200, 170, "fail"),  # 15% outside on 200 pairs
    (1000, 920, "pass"),  # 8%: not yet evidence of more than 5% at this alpha share
    (1000, 850, "fail"),
    (0, 0, "pass"),  # no pairs yet: nothing against it
]


@pytest.mark.parametrize(("pairs", "within", "result"), TOLERANCE_CASES)
def test_the_numeric_tolerance_check(pairs: int, within: int, result: str) -> None:
    verdict = judge(S, SEEN, None, 0, numeric(pairs, within))
    found = check(verdict)
    assert found.result == result, found.detail
    assert found.samples == pairs and found.threshold == 0.05
    if pairs:
        assert f"{pairs - within:g} of {pairs:g} pairs of output 'price'" in found.detail
        # five tests share alpha while shadowing; a regression model has one numeric output
        assert found.evidence_limit == pytest.approx(5 / S.analysis.alpha)
    # a model without a classification output has no agreement to judge
    assert check(verdict, "prediction_agreement").result == "skipped"


def test_outputs_share_the_shadow_comparisons_alpha_and_the_worst_is_shown() -> None:
    both = ShadowCounts(
        200, 190, 600, (NumericCounts("price", 200, 200), NumericCounts("spread", 200, 0))
    )
    verdict = judge(S, SEEN, None, 0, both)
    found = check(verdict)
    assert found.result == "fail" and "output 'spread'" in found.detail
    assert "the worst of 2 numeric outputs" in found.detail
    limit = 3 * 5 / S.analysis.alpha  # the top-1 agreement and two numeric outputs
    assert found.evidence_limit == pytest.approx(limit)
    agreement = check(verdict, "prediction_agreement")
    assert agreement.evidence_limit == pytest.approx(limit)


def test_a_classifier_alone_has_no_numeric_check_and_keeps_its_alpha() -> None:
    verdict = judge(S, SEEN, None, 0, ShadowCounts(200, 190, 200))
    assert all(c.name != "numeric_tolerance" for c in verdict.checks)
    assert check(verdict, "prediction_agreement").evidence_limit == pytest.approx(500)


def test_the_max_outside_of_the_spec_is_the_limit() -> None:
    loose = spec(numeric={"maxOutside": 0.2})
    assert check(judge(loose, SEEN, None, 0, numeric(200, 170))).result == "pass"


# -- the shadow phase --------------------------------------------------------------------


def shadowing(since: float) -> RolloutState:
    return RolloutState(phase="Shadowing", shadow_started_at=T0 - since, created_at=T0 - since)


SHADOW_PHASES = [
    # enough pairs of the numeric output, none outside: the first step, long before maxDuration
    (numeric(200, 200), "start", "shadow comparison: 0 of 200 pairs of output 'price'"),
    (numeric(60, 60), "hold", "shadowing: 60 of 200 pairs"),
    (numeric(20, 0), "rollback", "shadow comparison: 20 of 20 pairs of output 'price' differ"),
    # a classifier with a numeric output too: both must have their pairs
    (ShadowCounts(200, 200, 260, (NumericCounts("score", 60, 60),)), "hold", "60 of 200"),
]


@pytest.mark.parametrize(("counts", "action", "reason"), SHADOW_PHASES)
def test_the_shadow_phase_of_a_numeric_model_ends_on_evidence(
    counts: ShadowCounts, action: str, reason: str
) -> None:
    verdict = judge(S, SEEN, None, 0, counts)
    decision = decide(S, shadowing(20), verdict, (), None, T0)
    assert decision.action == action and reason in decision.reason, decision.reason


def test_pairs_are_counted_per_output_since_the_comparison_began() -> None:
    base = numeric(100, 90, NumericCounts("embedding", 100, 100))
    now = numeric(300, 200, NumericCounts("embedding", 300, 300), NumericCounts("new", 5, 5))
    since, kept = shadow_since(base, now)
    assert kept == base and not since.classifies
    assert since.numeric == (
        NumericCounts("price", 200, 110),
        NumericCounts("embedding", 200, 200),
        NumericCounts("new", 5, 5),
    )
    # a counter that went down: the comparator restarted, counted from zero again
    restarted, kept = shadow_since(base, numeric(10, 10, NumericCounts("embedding", 10, 10)))
    assert restarted.numeric[0] == NumericCounts("price", 10, 10) and kept.numeric == ()
    state = RolloutState(shadow_baseline=base)
    assert RolloutState.from_json(state.to_json()) == state


# -- the comparator's pairs --------------------------------------------------------------

KINDS = VersionPair({"price": "numeric", "embedding": "numeric"}, 1e-4, 1e-3, None)


def answers(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "price": rng.normal(3.0, 1.0, (64, 1)).astype(np.float32),
        "embedding": rng.normal(0.0, 1.0, (64, 16)).astype(np.float32),
    }


def within(canary: dict[str, np.ndarray], tolerance: Tolerance) -> dict[str, int]:
    return {o.output: o.agreeing for o in compare_answers(answers(), canary, KINDS, tolerance)}


def test_the_derived_tolerance_is_a_multiple_of_the_export_parity_tolerance() -> None:
    derived = Tolerance.of(KINDS, None, None)
    assert (derived.atol, derived.rtol) == (1e-4 * PARITY_MULTIPLE, 1e-3 * PARITY_MULTIPLE)
    assert Tolerance.of(KINDS, 0.5, None) == Tolerance(0.5, 1e-3 * PARITY_MULTIPLE)


def test_shifted_and_scaled_predictions_are_outside_and_a_retrained_alike_is_within() -> None:
    stable, tolerance = answers(), Tolerance.of(KINDS, None, None)
    rng = np.random.default_rng(1)
    alike = {k: v + rng.uniform(-5e-4, 5e-4, v.shape).astype(np.float32) for k, v in stable.items()}
    assert within(alike, tolerance) == {"price": 64, "embedding": 64}
    shifted = {k: v + v.std() for k, v in stable.items()}  # the mean moved by one sd
    assert within(shifted, tolerance) == {"price": 0, "embedding": 0}
    scaled = {k: v * 1.2 for k, v in stable.items()}  # the spread grew by a fifth
    found = within(scaled, tolerance)
    assert found["price"] <= 1 and found["embedding"] == 0
    # a wider tolerance from the spec passes the scaled version
    assert within(scaled, Tolerance(0.0, 0.25)) == {"price": 64, "embedding": 64}


def test_one_element_of_an_embedding_outside_puts_its_sample_outside() -> None:
    stable = answers()
    moved = {**stable, "embedding": stable["embedding"].copy()}
    moved["embedding"][3, 7] += 1.0
    assert within(moved, Tolerance.of(KINDS, None, None))["embedding"] == 63


def test_a_numeric_pair_needs_both_answers_of_one_shape() -> None:
    canary = {**answers(), "price": np.zeros((64, 2), np.float32)}
    with pytest.raises(Incomparable, match="output 'price'"):
        compare_answers(answers(), canary, KINDS, Tolerance(0.1, 0.1))


@pytest.mark.parametrize(
    ("move", "result"),
    [
        (lambda v: v + v.std(), "fail"),  # the mean moved by one standard deviation
        (lambda v: v * 1.2, "fail"),  # the spread grew by a fifth
        (lambda v: v + np.float32(2e-4), "pass"),  # alike: well within the tolerance
    ],
    ids=["mean", "spread", "alike"],
)
def test_one_batch_of_moved_predictions_is_evidence_enough(
    move: Callable[[np.ndarray], np.ndarray], result: str
) -> None:
    stable = answers()
    canary = {k: move(v) for k, v in stable.items()}
    compared = compare_answers(stable, canary, KINDS, Tolerance.of(KINDS, None, None))
    numeric = tuple(NumericCounts(o.output, o.pairs, o.agreeing) for o in compared)
    counts = ShadowCounts(0, 0, 128, numeric, classifies=False)
    assert check(judge(S, SEEN, None, 0, counts)).result == result


# -- the demo's summary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "shown"),
    [
        (numeric(200, 190), "95.0% of 200 pairs within tolerance"),  # a regression model
        (ShadowCounts(240, 234, 240), "97.5% of 240 pairs"),  # a classifier
        (
            ShadowCounts(
                200, 190, 600, (NumericCounts("price", 200, 200), NumericCounts("spread", 200, 150))
            ),
            "95.0% of 200 pairs; 75.0% of 200 pairs within tolerance",
        ),  # both: the numeric output with most evidence against it
        (None, "-"),  # not shadowing
    ],
)
def test_the_demo_shows_the_shadow_comparison_of_any_model(
    counts: ShadowCounts | None, shown: str
) -> None:
    verdict = judge(S, SEEN, None, 0, counts)
    state = RolloutState(analysis=LastAnalysis(T0, "pass", verdict.checks, (), ""))
    assert shadow_agreement(state) == shown
