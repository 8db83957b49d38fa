"""The retry budget: at most `ratio` of the requests plus a floor, over a sliding window."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelcanary.gateway.retry import RetryBudget, RetrySettings


def spend(budget: RetryBudget, now: float, wanted: int) -> int:
    return sum(budget.allow(now) for _ in range(wanted))


def test_retries_are_capped_at_the_ratio_of_requests() -> None:
    budget = RetryBudget(RetrySettings(ratio=0.2, min_per_s=0, window_s=10))
    for _ in range(100):
        budget.request(1.0)
    assert spend(budget, 1.0, 50) == 20
    for _ in range(10):  # more requests: more budget
        budget.request(2.0)
    assert spend(budget, 2.0, 50) == 2


def test_without_requests_only_the_floor_is_allowed() -> None:
    budget = RetryBudget(RetrySettings(ratio=0.2, min_per_s=0.5, window_s=10))
    assert spend(budget, 0.0, 20) == 5  # 0.5 per second over 10 s


def test_the_window_slides() -> None:
    budget = RetryBudget(RetrySettings(ratio=0.5, min_per_s=0, window_s=10))
    for _ in range(10):
        budget.request(0.0)
    assert spend(budget, 0.0, 10) == 5
    assert spend(budget, 9.0, 1) == 0  # still in the window: spent
    # 10 s later the old requests and retries have left the window, and so has the budget
    assert spend(budget, 10.5, 1) == 0
    for _ in range(4):
        budget.request(10.5)
    assert spend(budget, 10.5, 5) == 2
    assert budget.requests == 4 and budget.retries == 2


def test_a_zero_ratio_and_floor_allow_none() -> None:
    budget = RetryBudget(RetrySettings(ratio=0, min_per_s=0))
    for _ in range(1000):
        budget.request(5.0)
    assert spend(budget, 5.0, 1) == 0


@pytest.mark.parametrize(
    "field", [{"ratio": 1.5}, {"ratio": -0.1}, {"min_per_s": -1}, {"window_s": 0}, {"retires": 1}]
)
def test_invalid_settings_are_refused(field: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        RetrySettings.model_validate(field)
