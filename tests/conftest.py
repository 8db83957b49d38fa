"""Shared fixtures: repository snapshots and the CLI run in-process; every test is marked
by its folder (pure, tools, kube, stack), so `pytest -m "not stack"` is the quick loop."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelcanary.cli import main
from modelcanary.serving.triton_home import TritonHome

PROJECT = Path(__file__).resolve().parent.parent
FOLDERS = ("pure", "tools", "kube", "stack")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the folder it lives in: what it needs to run."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in FOLDERS:
            item.add_marker(getattr(pytest.mark, folder))


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run `modelcanary ARGS...` in-process from the project root (so `tests.*` imports)."""
    monkeypatch.chdir(PROJECT)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors and --help
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository (digits versions 1 to 5), built once per session.

    Read-only: tests that change it work on a copy (`shutil.copytree`)."""
    from modelcanary.examples import digits

    repo = tmp_path_factory.mktemp("digits") / "model_repo"
    results = digits.build(repo, say=lambda line: None)
    assert [r.version for r in results] == [1, 2, 3, 4, 5]
    return repo


@pytest.fixture(scope="session")
def triton_home() -> TritonHome:
    """The installed Triton (installed from PyPI on first use; `make setup` does it too)."""
    from modelcanary.serving.triton_home import TritonHome, install

    home = TritonHome.default()
    install(home, say=lambda line: None)
    return home


def metric_samples(metrics_url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample on a Prometheus metrics endpoint as (name, labels, value)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=5).text
    return [
        (s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples
    ]


def metric_value(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of the samples of one metric with these labels (0 when absent)."""
    return sum(
        value
        for sample, sample_labels, value in metric_samples(metrics_url)
        # the client's parser names counter samples `<name>_total`
        if sample in (name, f"{name}_total")
        and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root, and every directory, by relative path."""
    if not root.exists():
        return {}
    state: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        state[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return state


def staging_leftovers(root: Path) -> list[str]:
    """Staging directories an export left beside the repository."""
    return [p.name for p in root.resolve().parent.iterdir() if ".staging-" in p.name]
