"""The traffic split table: validation and choice (pure)."""

from __future__ import annotations

import pytest

from modelcanary.errors import UsageError
from modelcanary.gateway.weights import WeightTable


def test_choice_follows_the_cumulative_split() -> None:
    table = WeightTable.parse({"1": 90, "2": 10}, ["1", "2"])
    assert table.choose(0.0) == "1"
    assert table.choose(0.8999) == "1"
    assert table.choose(0.90) == "2"
    assert table.choose(0.99999) == "2"


def test_a_version_at_zero_is_never_chosen() -> None:
    table = WeightTable.parse({"1": 100, "2": 0}, ["1", "2"])
    assert {table.choose(d / 1000) for d in range(1000)} == {"1"}
    assert table.as_dict() == {"1": 100, "2": 0}


def test_versions_sort_numerically() -> None:
    assert WeightTable.parse({"10": 50, "9": 50}, ["9", "10"]).describe() == "9=50, 10=50"


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "weights are empty"),
        ({"1": 90, "2": 20}, "weights must sum to 100, not 110 (1=90, 2=20)"),
        ({"1": 90, "3": 10}, "version '3' is not served by this gateway (versions: 1, 2)"),
        ({"1": -10, "2": 110}, "weight of version '1' must be a whole percent from 0 to 100"),
        ({"1": 50.5, "2": 49.5}, "must be a whole percent"),
        ({"1": "90", "2": 10}, "weight of version '1' must be a number, not '90'"),
        ({"1": True, "2": 99}, "must be a number"),
        ({"1": float("nan"), "2": 0}, "must be a whole percent from 0 to 100, not nan"),
        ({"1": float("inf"), "2": 0}, "must be a whole percent from 0 to 100, not inf"),
        ({"1": float("-inf"), "2": 100}, "must be a whole percent from 0 to 100, not -inf"),
    ],
)
def test_invalid_splits_name_the_problem(weights: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as error:
        WeightTable.parse(weights, ["1", "2"])
    assert message in str(error.value)


def test_unnamed_versions_get_zero() -> None:
    assert WeightTable.parse({"2": 100}, ["1", "2", "3"]).as_dict() == {"1": 0, "2": 100, "3": 0}


@pytest.mark.parametrize(
    ("weights", "unready", "serving"),
    [
        ({"1": 70, "2": 30}, {"2"}, {"1": 100, "2": 0}),
        ({"1": 70, "2": 30}, {"1"}, {"1": 0, "2": 100}),
        ({"1": 90, "2": 5, "3": 5}, {"3"}, {"1": 95, "2": 5, "3": 0}),
        ({"1": 33, "2": 33, "3": 34}, {"3"}, {"1": 50, "2": 50, "3": 0}),
        ({"1": 100, "2": 0}, {"1"}, {"1": 100, "2": 0}),  # never to a version at 0%
        ({"1": 70, "2": 30}, {"1", "2"}, {"1": 70, "2": 30}),  # nothing ready: as asked
        ({"1": 70, "2": 30}, {"3"}, {"1": 70, "2": 30}),
    ],
)
def test_an_unready_versions_share_goes_to_the_ready_ones(
    weights: dict[str, int], unready: set[str], serving: dict[str, int]
) -> None:
    table = WeightTable.parse(weights, ["1", "2", "3"] if "3" in weights else ["1", "2"])
    moved = table.without(unready)
    assert moved.as_dict() == serving
    assert sum(moved.as_dict().values()) == 100
    assert {moved.choose(d / 1000) for d in range(1000)} == {v for v, w in serving.items() if w}
