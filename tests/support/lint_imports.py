"""Run import-linter (`lint-imports`) on a checkout: the contracts in its pyproject.toml,
over the `modelcanary` package under its `operator/` folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """`lint-imports` in `root` (all contracts, or only those ids); output is not wrapped."""
    env = {**os.environ, "PYTHONPATH": str(root / "operator"), "COLUMNS": "300"}
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    for contract in contracts:
        command += ["--contract", contract]
    return subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False
    )
