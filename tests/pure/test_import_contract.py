"""The package map holds: the contracts in pyproject.toml ([tool.importlinter]) pass on
the repository, and every top-level package has its place in the layers.

import-linter reads every import: absolute, relative, and lazy ones inside functions,
stdlib and third-party ones too. tests/pure/test_import_contract_violations.py plants
each kind of violation and sees the linter fail.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.conftest import PROJECT
from tests.support.lint_imports import lint_imports

PACKAGE = PROJECT / "operator" / "modelcanary"


def contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (found,) = [c for c in config["contracts"] if c["id"] == contract_id]
    return dict(found)


def test_the_repository_keeps_every_import_contract() -> None:
    result = lint_imports(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken." in result.stdout


def test_every_package_has_a_layer() -> None:
    """A new package (a folder with __init__.py) must be placed; modules need not be."""
    layers = contract("layers")["layers"]
    assert isinstance(layers, list)
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages - placed == set(), "add these packages to the layers contract"
    assert placed - packages - {"cli"} == set(), "the layers name packages that are gone"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_is_much_over_400_lines() -> None:
    long = {
        m: n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
        for m in [module_name(p)]
    }
    assert long == {}
