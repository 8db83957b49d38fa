"""Issue 13 defects 6 and 8: bad input is one line naming the problem and a non-zero exit,
never a traceback, and a stopped command keeps what it already did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT, CliResult

Cli = Callable[..., CliResult]
REFUSED = "http://127.0.0.1:9"  # nothing listens on the discard port
SPEC = "model: digits\nstable: {version: '1'}\ncanary: {version: '2'}\nsteps: [10, 100]\n"


def one_line(result: CliResult, code: int = 2) -> str:
    """The error line, after checking it is the only one."""
    assert result.code == code, (result.code, result.err)
    assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
    assert result.err.startswith("modelcanary ")
    return result.err


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one version's golden samples, enough for `load` to build requests."""
    version = tmp_path / "model_repo" / "digits" / "1"
    version.mkdir(parents=True)
    pixels = np.zeros((4, 64), dtype=np.float32)
    with (version / "golden.npz").open("wb") as out:
        np.savez(out, **{"inputs/pixels": pixels, "outputs/logits": np.zeros((4, 10))})
    return tmp_path / "model_repo"


def test_a_spec_that_is_not_utf8_is_named(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_bytes(b"model: digits\n# caf\xe9\n")
    err = one_line(cli("rollout", "start", "-f", spec, "--run-dir", tmp_path))
    assert f"-f {spec}: not UTF-8 text" in err


@pytest.mark.parametrize(
    "command",
    [
        ("rollout", "start", "-f", "SPEC"),
        ("status",),
        ("rollback", "--reason", "x"),
        ("fault", "--model", "digits", "--version", "2", "--clear"),
        ("serve", "--repo", "REPO", "--model", "digits", "--versions", "1"),
        ("up", "--repo", "REPO", "--model", "digits", "--stable", "1"),
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_a_run_dir_that_is_a_file_is_named(
    cli: Cli, tmp_path: Path, repo: Path, command: tuple[str, ...]
) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(SPEC)
    run_dir = tmp_path / "run"
    run_dir.write_text("not a directory")
    args = [{"SPEC": spec, "REPO": repo}.get(a, a) for a in command]
    err = one_line(cli(*args, "--run-dir", run_dir))
    assert f"--run-dir: {str(run_dir)!r} is not a directory" in err
    assert run_dir.read_text() == "not a directory"


@pytest.mark.parametrize("rate", ["inf", "nan", "-inf"])
def test_load_refuses_a_rate_that_is_not_finite(cli: Cli, repo: Path, rate: str) -> None:
    args = ("--url", REFUSED, "--model", "digits", "--repo", repo, f"--rate={rate}")
    err = one_line(cli("load", *args, "--duration", "1"))
    assert f"--rate: {rate!r} is not a finite number" in err


def test_load_refuses_a_report_it_could_not_write_before_sending(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    report = tmp_path / "missing" / "report.json"
    started = time.monotonic()
    line = f"load --url {REFUSED} --model digits --rate 5 --duration 2"
    result = cli(*line.split(), "--repo", repo, "--json", report)
    err = one_line(result)
    assert f"--json {report}: no directory {report.parent}" in err
    assert time.monotonic() - started < 2  # refused before the run, not after it
    assert result.out == ""


def test_load_stopped_by_sigterm_keeps_its_report(repo: Path, tmp_path: Path) -> None:
    """Issue 13 defect 8: SIGTERM lost the whole run's report."""
    report = tmp_path / "report.json"
    line = f"-m modelcanary load --url {REFUSED} --model digits --rate 20 --duration 60"
    argv = [sys.executable, *line.split(), "--repo", str(repo), "--json", str(report)]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT / "operator")},
    )
    time.sleep(4)  # the interpreter starts, then sends for a while
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "stopped after" in err
    assert "target 20/s" in out  # the table
    written = json.loads(report.read_text())
    assert written["total"]["requests"] > 0
    assert written["duration_s"] < 30  # what was run, not what was asked
