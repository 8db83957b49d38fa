"""The tests' one wait (tests/support/waits.py): what it returns and how it fails."""

from __future__ import annotations

import itertools

import pytest

from tests.support.waits import until


def test_it_returns_what_the_check_found_once_true() -> None:
    counter = itertools.count()
    assert until(lambda: [n for n in [next(counter)] if n >= 3], 5, "never 3", every=0.001) == [3]


def test_a_timeout_names_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError) as failed:
        until(lambda: [], 0.05, "no pairs compared", every=0.01)
    assert str(failed.value) == "no pairs compared (waited 0.05 s; the check last gave [])"


def test_what_can_no_longer_come_fails_at_once_with_its_reason_and_the_context() -> None:
    checked = []
    with pytest.raises(AssertionError) as failed:
        until(
            lambda: checked.append(1),
            60,
            "the operator did not answer",
            gone=lambda: "it exited with 3",
            context=lambda: "its log ends: boom",
        )
    assert str(failed.value) == "the operator did not answer: it exited with 3\nits log ends: boom"
    assert checked == []
