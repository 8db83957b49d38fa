"""The rollout spec the local stack's tests and benchmarks start (`modelcanary rollout start
-f`): one base, each caller's differences on top, so a reader sees only what a test changes."""

from __future__ import annotations

import copy
from collections.abc import Mapping

# digits in three steps of 4 s, every check on: the base of tests/stack/test_rollouts_*.py
BASE: dict[str, object] = {
    "model": "digits",
    "steps": [20, 50, 100],
    "interval": "4s",
    "analysis": {
        "failureLimit": 0,
        "errorRatio": {"max": 0.05, "maxAboveStable": 0.02},
        "latencyP99": {"maxSeconds": 0.25, "maxRatioToStable": 3, "ratioFloorSeconds": 0.1},
        "noData": {"after": "5s", "action": "pause"},
        "beforeFull": {"errorRatioAboveStable": 0.05, "maxWait": "5s"},
    },
    "shadow": {"percent": 100, "minSamples": 30, "maxDuration": "10s"},
    "progressDeadline": "3m",
}


def rollout_spec(
    stable: int, canary: int, analysis: Mapping[str, object] | None = None, **changes: object
) -> dict[str, object]:
    """BASE from STABLE to CANARY. CHANGES replace top-level fields, ANALYSIS's replace the
    analysis's fields; a field given None is removed."""
    document: dict[str, object] = {
        "stable": {"version": str(stable)},
        "canary": {"version": str(canary)},
        **copy.deepcopy(BASE),
    }
    base_analysis = document["analysis"]
    assert isinstance(base_analysis, dict)
    document["analysis"] = _changed(base_analysis, analysis or {})
    return _changed(document, changes)


def _changed(fields: Mapping[str, object], changes: Mapping[str, object]) -> dict[str, object]:
    merged = {**fields, **changes}
    return {name: value for name, value in merged.items() if value is not None}
