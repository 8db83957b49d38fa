"""Each kind of violation, planted in a copy of operator/, makes import-linter fail the
contract that forbids it: new modules fall under their package's rules, and relative and
lazy imports count as much as absolute ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.support.lint_imports import lint_imports


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The repository's package and contracts, copied."""
    shutil.copytree(
        PROJECT / "operator",
        tmp_path / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


PLANTED_VIOLATIONS = [
    # the operator's image has no model tooling
    ("kube/planted.py", "import torch\n", "no-model-tooling"),
    ("adapters/planted.py", "def load():\n    import onnxruntime\n", "no-model-tooling"),
    # the pure core does no I/O, not even lazily
    ("rollout/planted.py", "import socket\n", "pure-core"),
    ("rollout/planted.py", "def run():\n    import subprocess\n", "pure-core"),
    ("rollout/planted.py", "import httpx\n", "pure-core"),
    # the two modes never import each other, relatively or not
    ("kube/planted.py", "from ..local import controller\n", "modes"),
    ("local/planted.py", "from modelcanary.kube import operator\n", "modes"),
    # a lower layer never imports a higher one
    ("adapters/planted.py", "from modelcanary.kube import crd\n", "layers"),
    ("rollout/planted.py", "from modelcanary.adapters import factory\n", "layers"),
    # the kubectl plugin never reaches the local stack
    ("kubectl/planted.py", "from modelcanary.local import stack\n", "kubectl-cluster-only"),
    # a new cycle: tables is imported by rollout.view, and now imports it
    ("tables.py", "from modelcanary.rollout import view\n", "acyclic"),
]


@pytest.mark.parametrize(("module", "source", "broken"), PLANTED_VIOLATIONS)
def test_a_planted_violation_breaks_its_contract(
    checkout: Path, module: str, source: str, broken: str
) -> None:
    assert lint_imports(checkout, broken).returncode == 0, "the copy must pass first"
    planted = checkout / "operator" / "modelcanary" / module
    existing = planted.read_text() if planted.exists() else ""
    planted.write_text(existing + "\n" + source)
    result = lint_imports(checkout, broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
