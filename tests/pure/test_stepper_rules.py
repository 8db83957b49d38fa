"""The stepper's rules one at a time: each decides in its own case and leaves the others to
the next rule; `RULES` holds them in the order of the stepper's numbered list."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from modelcanary.rollout import pretraffic, rules, stepper
from modelcanary.rollout.decision import Decision, Situation
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.judge import Verdict
from modelcanary.rollout.ports import FiringAlert, GateResult, GoldenResult
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import RolloutState
from modelcanary.rollout.stepper import RULES, Rule, decide
from tests.pure.test_rollout_stepper import (
    CRITICAL,
    FAIL,
    GOLDEN_OK,
    MANY,
    NO_DATA,
    NOT_READY,
    NOT_WORSE,
    PASS,
    SPEC,
    T0,
    WARNING,
    WORSE,
    agreement,
    at_step,
    paused_by,
    verdict,
)
from tests.pure.test_rollout_stepper import shadowing as shadowing_since


def situation(
    state: RolloutState,
    v: Verdict = PASS,
    alerts: tuple[FiringAlert, ...] = (),
    intent: Intent | None = None,
    golden: GoldenResult | None = None,
    gate: GateResult | None = None,
    spec: RolloutSpec = SPEC,
    counters: str | None = None,
) -> Situation:
    return Situation(spec, state, v, alerts, intent, T0, golden, gate, False, counters)


PENDING = RolloutState(created_at=T0 - 10)
ANA_ROLLBACK = Intent("rollback", "wrong outputs", "ana")


# fmt: off
# a table: one case a line, rule, situation, expected action and reason
RULE_CASES = [
    # 1. operator intent; none: the next rule's turn
    (rules.operator_intent, situation(at_step(1), intent=ANA_ROLLBACK), "rollback", "rollback requested by ana: wrong outputs"),
    (rules.operator_intent, situation(at_step(1)), None, ""),
    # 2. a finished rollout holds
    (rules.finished, situation(replace(at_step(2), phase="Promoted")), "hold", "rollout is Promoted"),
    (rules.finished, situation(at_step(2)), None, ""),
    # 3. a rollback alert on enough requests; on too few it is rule 9's
    (rules.rollback_alert, situation(at_step(1), MANY, (CRITICAL,)), "rollback", "fired for version 2"),
    (rules.rollback_alert, situation(at_step(1), verdict("pass", samples=150), (CRITICAL,)), None, ""),
    (rules.rollback_alert, situation(at_step(1), MANY, (WARNING,)), None, ""),
    # 4. before the first step
    (pretraffic.before_first_step, situation(PENDING, golden=GOLDEN_OK, gate=WORSE), "rollback", "worse than stable on the holdout"),
    (pretraffic.before_first_step, situation(PENDING, golden=GOLDEN_OK, gate=NOT_WORSE), "start", "golden samples match"),
    (pretraffic.before_first_step, situation(PENDING, NOT_READY, golden=GOLDEN_OK), "hold", "waiting for the canary to be ready"),
    (pretraffic.before_first_step, situation(PENDING, golden=GOLDEN_OK, gate=NOT_WORSE, counters="no stable counters"), "hold", "waiting for the counters before the first step"),
    (pretraffic.before_first_step, situation(at_step(0)), None, ""),
    # 4b. shadowing
    (pretraffic.shadowing, situation(shadowing_since(5), agreement("fail", 8, "agrees on 0 of 8")), "rollback", "shadow comparison: agrees on 0 of 8"),
    (pretraffic.shadowing, situation(shadowing_since(60), agreement("pass", 37)), "hold", "shadowing: 37 of 200 pairs"),
    (pretraffic.shadowing, situation(PENDING), None, ""),
    # 5. paused by hand; past the deadline
    (rules.paused_by_hand_or_late, situation(paused_by("ana"), FAIL), "hold", "paused"),
    (rules.paused_by_hand_or_late, situation(replace(at_step(1), started_at=T0 - 601)), "rollback", "not promoted within progressDeadline 10m"),
    (rules.paused_by_hand_or_late, situation(paused_by("controller")), None, ""),
    # 6. a canary holding weight, unready for an interval
    (rules.unready_with_weight, situation(replace(at_step(1), unready_since=T0 - 30), NOT_READY), "rollback", "not been ready for 30s while holding 50%"),
    (rules.unready_with_weight, situation(replace(at_step(1), unready_since=T0 - 29), NOT_READY), None, ""),
    (rules.unready_with_weight, situation(at_step(1), NOT_READY), None, ""),
    # 7. failed checks count, up to failureLimit
    (rules.failed_checks, situation(at_step(1), FAIL), "hold", "check failed (1 of 2 tolerated)"),
    (rules.failed_checks, situation(at_step(1, failures=2), FAIL), "rollback", "checks failed 3 times (limit 2)"),
    (rules.failed_checks, situation(at_step(1)), None, ""),
    # 7b. paused by the controller
    (rules.paused_by_controller, situation(paused_by("controller")), "hold", "paused: no data for more than 1m"),
    (rules.paused_by_controller, situation(at_step(1)), None, ""),
    # 8. no data too long
    (rules.no_data, situation(at_step(2, since=300, data_ago=90), NO_DATA), "pause", "no data for more than 1m (no canary requests)"),
    (rules.no_data, situation(at_step(2, since=300, data_ago=30), NO_DATA), None, ""),
    # 9. holding alerts, rollback alerts on too few requests, inconclusive verdicts
    (rules.holding, situation(at_step(0), alerts=(WARNING,)), "hold", "holding: alert ModelVersionTrafficBelowShare (warning)"),
    (rules.holding, situation(at_step(1), verdict("pass", samples=150), (CRITICAL,)), "hold", "on 150 canary requests, too few to roll back on"),
    (rules.holding, situation(at_step(0), verdict("inconclusive", samples=12)), "hold", "waiting: no canary requests yet"),
    (rules.holding, situation(at_step(0)), None, ""),
]
# fmt: on


@pytest.mark.parametrize(("rule", "s", "action", "reason"), RULE_CASES)
def test_each_rule_decides_its_own_case_and_leaves_the_rest(
    rule: Rule, s: Situation, action: str | None, reason: str
) -> None:
    decision = rule(s)
    if action is None:
        assert decision is None
        return
    assert decision is not None and decision.action == action, decision
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("state", "action", "reason"),
    [
        (at_step(0, since=10), "hold", "step 1 healthy; 20s left"),
        (at_step(0, since=40), "advance", "checks passed; step 2"),
        (at_step(2, since=40), "promote", "all checks passed at every step"),
    ],
)
def test_rule_10_has_the_last_word(state: RolloutState, action: str, reason: str) -> None:
    decision = rules.advance_or_promote(situation(state))
    assert decision.action == action and reason in decision.reason


@pytest.mark.parametrize(
    ("s", "first", "later"),
    [
        # an operator's rollback is the operator's, whatever the alerts say
        (
            situation(at_step(1), MANY, (CRITICAL,), ANA_ROLLBACK),
            rules.operator_intent,
            rules.rollback_alert,
        ),
        # a critical alert on enough requests rolls back; alone, rule 9 would hold
        (situation(at_step(1), MANY, (CRITICAL, WARNING)), rules.rollback_alert, rules.holding),
        # a failed check during a pause for no data counts, before the pause holds
        (situation(paused_by("controller"), FAIL), rules.failed_checks, rules.paused_by_controller),
    ],
)
def test_the_earlier_rule_wins(s: Situation, first: Rule, later: Rule) -> None:
    assert RULES.index(first) < RULES.index(later)
    earlier, other = first(s), later(s)
    assert earlier is not None and other is not None and earlier != other
    assert _decided(s) == earlier


def test_the_table_is_the_numbered_list_in_the_stepper_docstring() -> None:
    """Each rule's docstring opens with its number; in `RULES`, then rule 10 last, they
    follow the list the stepper's docstring gives in words."""
    listed = re.findall(r"^(\d+b?)\. ", stepper.__doc__ or "", re.M)
    assert [_number(rule) for rule in (*RULES, rules.advance_or_promote)] == listed


def _number(rule: Rule) -> str:
    found = re.match(r"Rule (\d+b?)\b", rule.__doc__ or "")
    return found.group(1) if found else f"{rule.__name__} has no number"


def _decided(s: Situation) -> Decision:
    return decide(
        s.spec,
        s.state,
        s.verdict,
        s.alerts,
        s.intent,
        s.now,
        s.golden,
        s.gate,
        s.shadow_available,
        s.counters,
    )
