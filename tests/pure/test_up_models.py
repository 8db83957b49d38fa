"""Several models in one `modelcanary up` (issue 21): `--model NAME:STABLE[:CANARY[:WEIGHT]]`
repeated, beside the single `--model NAME --stable N` form; bad input is one line naming
what is wrong, and nothing is started or written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelcanary.commands.up import served_models
from modelcanary.local.stack_models import ServedModel
from tests.conftest import CliResult

Cli = Callable[..., CliResult]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Models `digits` (versions 1 and 2) and `other` (version 1): directories only."""
    root = tmp_path / "model_repo"
    for model, versions in (("digits", (1, 2)), ("other", (1,))):
        (root / model).mkdir(parents=True)
        (root / model / "config.pbtxt").write_text(f'name: "{model}"\n')
        for version in versions:
            (root / model / str(version)).mkdir()
    return root


@pytest.mark.parametrize(
    ("models", "options", "expected"),
    [
        (["digits"], {"stable": 1}, [ServedModel("digits", 1)]),
        (["digits"], {"stable": 1, "canary": 2, "canary_weight": 10},
         [ServedModel("digits", 1, 2, 10)]),
        (["digits:1"], {}, [ServedModel("digits", 1)]),
        (["digits:1", "other:3:4:25", "b.c-d_e:2:5"], {},
         [ServedModel("digits", 1), ServedModel("other", 3, 4, 25), ServedModel("b.c-d_e", 2, 5)]),
    ],
)  # fmt: skip
def test_each_model_gets_its_stable_and_canary(
    models: list[str], options: dict[str, int], expected: list[ServedModel]
) -> None:
    found = served_models(
        models, options.get("stable"), options.get("canary"), options.get("canary_weight", 0)
    )
    assert list(found) == expected


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--model", "digits"],
         "--model digits: no stable version; give --stable, or --model digits:STABLE"),
        (["--model", "digits:1", "--model", "other"],
         "--model other: no stable version; give --model other:STABLE"),
        (["--model", "digits:1", "--model", "digits:2"], "--model digits is given twice"),
        (["--model", "digits:1", "--model", "other:1", "--stable", "1"],
         "--stable, --canary and --canary-weight go with a single --model; with several, give "
         "each its own: --model NAME:STABLE[:CANARY[:WEIGHT]]"),
        (["--model", "digits:1", "--stable", "2"],
         "--model digits:1 gives the stable version already; drop --stable"),
        (["--model", "digits:x"], "--model digits:x: the stable version 'x' is not a version (1 or "
         "more)"),
        (["--model", "digits:0"], "--model digits:0: the stable version '0' is not a version (1 or "
         "more)"),
        (["--model", "digits:1", "--canary", "2"],
         "--model digits:1: give its canary as --model NAME:STABLE[:CANARY[:WEIGHT]]"),
        (["--model", "digits", "--stable", "1", "--canary", "1"],
         "--canary must differ from --stable"),
        (["--model", "digits:1:2:150"], "--model digits:1:2:150: the canary weight must be "
         "between 0 and 100"),
        (["--model", "digits:1:1"], "--model digits:1:1: the canary must differ from stable"),
        (["--model", "digits:1::10"], "--model digits:1::10: a canary weight needs a canary"),
        (["--model", "digits:1:2:3:4"],
         "--model digits:1:2:3:4: expected NAME:STABLE[:CANARY[:WEIGHT]]"),
        (["--model", "../x:1"], "--model '../x' is not a valid model name: use letters, digits, "
         "'_', '.', '-', starting with a letter or digit, at most 128 characters"),
        (["--model", "digits:1", "--model", "nosuch:1"],
         "--model nosuch: no such model in REPO (its models: digits, other)"),
        (["--model", "digits:1", "--model", "other:2"],
         "other version 2 is not among the served versions 1 of REPO"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)  # fmt: skip
def test_bad_models_are_named_and_nothing_starts(
    cli: Cli, repo: Path, tmp_path: Path, args: list[str], problem: str
) -> None:
    run_dir = tmp_path / "run"
    result = cli("up", "--repo", repo, "--run-dir", run_dir, *args)
    assert result.code == 2, result
    assert "Traceback" not in result.err and result.err.count("\n") == 1, result.err
    assert result.err == f"modelcanary up: error: {problem.replace('REPO', str(repo))}\n"
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.iterdir())
