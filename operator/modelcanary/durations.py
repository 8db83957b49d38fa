"""The one duration grammar: `30s`, `5m`, `1h30m`, `250ms`, `1d`.

Units in decreasing order, each at most once; a subset of Prometheus' durations, so a
value is valid in a rollout spec, an alert profile, a rule's `for:` and a CRD pattern
(RE2: no lookahead). Pure.
"""

from __future__ import annotations

import re
from functools import lru_cache

DURATION_PATTERN = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
_DURATION = re.compile(DURATION_PATTERN)
_UNITS = ((86400, 1), (3600, 1), (60, 1), (1, 1), (0.001, 2))  # (seconds, suffix length)


@lru_cache(maxsize=1024)  # a spec's durations are read on every tick of every rollout
def parse_duration(text: str) -> float:
    """Seconds in a duration like `30s`, `5m`, `1h30m`, `250ms`; ValueError otherwise."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    try:
        return float(
            sum(
                int(group[:-suffix]) * seconds
                for group, (seconds, suffix) in zip(match.groups(), _UNITS, strict=True)
                if group
            )
        )
    except OverflowError:  # a pattern-valid duration of hundreds of digits
        raise ValueError(f"a duration of {len(text)} characters is too large") from None
