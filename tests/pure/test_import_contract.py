"""The package map holds: the rollout core imports no adapter and does no I/O, local and
kube never import each other, and the operator's modules need no model tooling.

Every import is read from the source with `ast`, including those inside functions, so a
lazy import cannot slip past the contract.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "modelcanary"
IO_LIBRARIES = ("httpx", "fastapi", "starlette", "uvicorn", "aiohttp", "kubernetes", "kopf")
MODEL_TOOLING = ("torch", "onnx", "onnxruntime", "tritonclient", "sklearn")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, top-level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def imported_by(prefix: str) -> dict[str, set[str]]:
    return {m: i for m, i in MODULES.items() if m == prefix or m.startswith(prefix + ".")}


def violations(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in imported_by(prefix).items()
        for name in names
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # the core: pure, no adapter, no backend, no I/O library
        ("modelcanary.rollout", ("modelcanary.adapters", "modelcanary.kube",
                                 "modelcanary.local", "modelcanary.gateway",
                                 "modelcanary.serving", "modelcanary.commands",
                                 "modelcanary.modelrepo", *IO_LIBRARIES, *MODEL_TOOLING)),
        # the two modes share the engine and the adapters, never each other
        ("modelcanary.local", ("modelcanary.kube", "modelcanary.kubectl")),
        ("modelcanary.kube", ("modelcanary.local", "modelcanary.gateway", "modelcanary.serving")),
        ("modelcanary.kubectl", ("modelcanary.local",)),
        # the dashboard serves both modes through their backends (local.dashboard,
        # kubectl.dashboard), and the chart's Grafana dashboards, never reaching into either
        ("modelcanary.dashboard", ("modelcanary.local", "modelcanary.kube",
                                   "modelcanary.kubectl", "modelcanary.commands")),
        # serving is used by the local stack, not the other way round
        ("modelcanary.serving", ("modelcanary.local",)),
        # adapters are chosen by the modes; they do not reach back into them
        ("modelcanary.adapters", ("modelcanary.local", "modelcanary.kube.operator",
                                  "modelcanary.commands", *MODEL_TOOLING)),
        # the model repository stands alone
        ("modelcanary.modelrepo", ("modelcanary.rollout", "modelcanary.adapters",
                                   "modelcanary.kube", "modelcanary.local")),
        # the comparator runs in the gateway locally and alone in a cluster: no model tooling
        ("modelcanary.shadow", ("modelcanary.local", "modelcanary.kube", "modelcanary.rollout",
                                "modelcanary.adapters", "modelcanary.commands",
                                "modelcanary.modelrepo.repository", *MODEL_TOOLING)),
        # the comparisons the operator uses (golden check, shadow, holdout gate) are numpy alone
        ("modelcanary.modelrepo.compare", MODEL_TOOLING),
        ("modelcanary.modelrepo.comparison", MODEL_TOOLING),
        ("modelcanary.modelrepo.drift", MODEL_TOOLING),
        ("modelcanary.modelrepo.holdout", MODEL_TOOLING),
        ("modelcanary.modelrepo.manifest", MODEL_TOOLING),
        ("modelcanary.modelrepo.tensorspec", MODEL_TOOLING),
    ],
)  # fmt: skip
def test_import_contract(package: str, forbidden: tuple[str, ...]) -> None:
    assert imported_by(package), f"{package} has no modules: the map is out of date"
    assert violations(package, forbidden) == []


def test_the_contract_catches_a_violation() -> None:
    """The check itself works: the operator does import an adapter."""
    assert violations("modelcanary.kube.operator", ("modelcanary.adapters",))


def test_no_module_is_much_over_400_lines() -> None:
    long = {m: n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420 for m in [module_name(p)]}  # fmt: skip
    assert long == {}
