"""promtool for the rule tests: `test rules` on the rules rendered for a profile, and
`check rules` on a file. Missing promtool fails, never skips: `make setup` installs it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelcanary.alerts.profile import Profile
from modelcanary.alerts.rules import ALERT_NAMES, render

PROMTOOL = shutil.which("promtool")
if PROMTOOL is None:
    raise RuntimeError("promtool is missing: run `make setup` as root (apt-get install prometheus)")


def promtool(*args: str) -> None:
    """Run promtool; its output is the failure message."""
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def run_rule_tests(
    tmp_path: Path,
    profile: Profile,
    series: list[dict[str, str]],
    expected: dict[str, list[dict[str, Any]]],
    at: str,
    recorded: Sequence[dict[str, Any]] = (),
) -> None:
    """The rules for PROFILE on SERIES (1 s apart): at AT every alert fires as EXPECTED
    (absent ones stay quiet), and each recorded expression has its value."""
    rules = tmp_path / "rules.yml"
    rules.write_text(render(profile))
    case: dict[str, Any] = {
        "interval": "1s",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": expected.get(name, [])}
            for name in ALERT_NAMES
        ],
    }
    if recorded:
        case["promql_expr_test"] = list(recorded)
    test = {"rule_files": [str(rules)], "evaluation_interval": "1s", "tests": [case]}
    test_file = tmp_path / "test.yml"
    test_file.write_text(yaml.safe_dump(test, sort_keys=False, width=1000))
    promtool("test", "rules", str(test_file))
