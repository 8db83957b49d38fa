"""Several models in one `modelcanary up` (issue 21): `--model NAME:STABLE[:CANARY[:WEIGHT]]`
repeated, beside the single `--model NAME --stable N` form; bad input is one line naming
what is wrong, and nothing is started or written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelcanary.commands.up_models import models_file, served_models
from modelcanary.local.controller import LocalRollout
from modelcanary.local.stack import resumed_plan
from modelcanary.local.stack_models import ModelPlan, ServedModel
from modelcanary.rollout.spec import load_spec
from modelcanary.rollout.state import RolloutState
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
SPEC = "model: digits\nstable: {version: '1'}\ncanary: {version: '2'}\nsteps: [20, 100]\n"


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
        (
            ["digits"],
            {"stable": 1, "canary": 2, "canary_weight": 10},
            [ServedModel("digits", 1, 2, 10)],
        ),
        (["digits:1"], {}, [ServedModel("digits", 1)]),
        (
            ["digits:1", "other:3:4:25", "b.c-d_e:2:5"],
            {},
            [
                ServedModel("digits", 1),
                ServedModel("other", 3, 4, 25),
                ServedModel("b.c-d_e", 2, 5),
            ],
        ),
    ],
)
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
        (
            ["--model", "digits"],
            "--model digits: no stable version; give --stable, or --model digits:STABLE",
        ),
        (
            ["--model", "digits:1", "--model", "other"],
            "--model other: no stable version; give --model other:STABLE",
        ),
        (["--model", "digits:1", "--model", "digits:2"], "--model digits is given twice"),
        (
            ["--model", "digits:1", "--model", "other:1", "--stable", "1"],
            "--stable, --canary and --canary-weight go with a single --model; with several, give "
            "each its own: --model NAME:STABLE[:CANARY[:WEIGHT]]",
        ),
        (
            ["--model", "digits:1", "--stable", "2"],
            "--model digits:1 gives the stable version already; drop --stable",
        ),
        (
            ["--model", "digits:x"],
            "--model digits:x: the stable version 'x' is not a version (1 or more)",
        ),
        (
            ["--model", "digits:0"],
            "--model digits:0: the stable version '0' is not a version (1 or more)",
        ),
        (
            ["--model", "digits:1", "--canary", "2"],
            "--model digits:1: give its canary as --model NAME:STABLE[:CANARY[:WEIGHT]]",
        ),
        (
            ["--model", "digits", "--stable", "1", "--canary", "1"],
            "--canary must differ from --stable",
        ),
        (
            ["--model", "digits:1:2:150"],
            "--model digits:1:2:150: the canary weight must be between 0 and 100",
        ),
        (["--model", "digits:1:1"], "--model digits:1:1: the canary must differ from stable"),
        (["--model", "digits:1::10"], "--model digits:1::10: a canary weight needs a canary"),
        (
            ["--model", "digits:1:2:3:4"],
            "--model digits:1:2:3:4: expected NAME:STABLE[:CANARY[:WEIGHT]]",
        ),
        (
            ["--model", "../x:1"],
            "--model '../x' is not a valid model name: use letters, digits, "
            "'_', '.', '-', starting with a letter or digit, at most 128 characters",
        ),
        (
            ["--model", "digits:1", "--model", "nosuch:1"],
            "no model nosuch in REPO (its models: digits, other)",
        ),
        (
            ["--model", "digits:1", "--model", "other:2"],
            "other version 2 is not among the served versions 1 of REPO",
        ),
        (
            ["--model", "digits:1", "--model", "other:1", "--versions", "1,2"],
            "--versions: other has no version 2 in REPO (its versions: 1)",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_bad_models_are_named_and_nothing_starts(
    cli: Cli, repo: Path, tmp_path: Path, args: list[str], problem: str
) -> None:
    run_dir = tmp_path / "run"
    result = cli("up", "--repo", repo, "--run-dir", run_dir, *args)
    assert result.code == 2, result
    assert "Traceback" not in result.err and result.err.count("\n") == 1, result.err
    assert result.err == f"modelcanary up: error: {problem.replace('REPO', str(repo))}\n"
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.iterdir())


MODELS_FILE = """\
models:
  - name: digits
    stable: 1
  - name: other
    stable: 3
    canary: 4
    canaryWeight: 25
"""


def test_the_models_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(MODELS_FILE)
    assert models_file(path) == (ServedModel("digits", 1), ServedModel("other", 3, 4, 25))


@pytest.mark.parametrize(
    ("text", "args", "problem"),
    [
        (
            "models: [",
            [],
            "--models FILE: not valid YAML at line 1, column 10: expected the node "
            "content, but found '<stream end>'",
        ),
        (
            "models: []",
            [],
            "--models FILE: models: List should have at least 1 item after validation, not 0",
        ),
        ("models:\n  - name: digits\n", [], "--models FILE: models.0.stable: Field required"),
        (
            "models:\n  - {name: digits, stable: '1'}\n",
            [],
            "--models FILE: models.0.stable: Input should be a valid integer",
        ),
        (
            "models:\n  - {name: digits, stable: 1, weight: 3}\n",
            [],
            "--models FILE: models.0.weight: Extra inputs are not permitted",
        ),
        (
            "models:\n  - {name: digits, stable: 1}\n  - {name: digits, stable: 2}\n",
            [],
            "--models FILE: models.1: digits is given twice",
        ),
        (
            "models:\n  - {name: digits, stable: 1, canaryWeight: 5}\n",
            [],
            "--models FILE: models.0: a canary weight needs a canary",
        ),
        (
            "models:\n  - {name: ../x, stable: 1}\n",
            [],
            "--models FILE: models.0.name '../x' is not a valid model name: use letters, digits, "
            "'_', '.', '-', starting with a letter or digit, at most 128 characters",
        ),
        (
            "models:\n  - {name: nosuch, stable: 1}\n",
            [],
            "no model nosuch in REPO (its models: digits, other)",
        ),
        (
            MODELS_FILE,
            ["--model", "digits:1"],
            "give the models with --model or with --models, not both",
        ),
        (MODELS_FILE, ["--stable", "1"], "give the models with --model or with --models, not both"),
        (None, [], "--models FILE: No such file or directory"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value or ["-"]),
)
def test_a_bad_models_file_is_named_and_nothing_starts(
    cli: Cli, repo: Path, tmp_path: Path, text: str | None, args: list[str], problem: str
) -> None:
    path = tmp_path / "models.yaml"
    if text is not None:
        path.write_text(text)
    run_dir = tmp_path / "run"
    result = cli("up", "--repo", repo, "--run-dir", run_dir, "--models", path, *args)
    assert result.code == 2, result
    expected = problem.replace("REPO", str(repo)).replace("--models FILE", f"--models {path}")
    assert result.err.startswith(f"modelcanary up: error: {expected}"), result.err
    assert "Traceback" not in result.err and result.err.count("\n") == 1, result.err
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.iterdir())


def test_up_needs_a_model(cli: Cli, repo: Path) -> None:
    result = cli("up", "--repo", repo)
    assert result.code == 2
    assert result.err == (
        "modelcanary up: error: no model to serve: give --model NAME --stable N, --model "
        "NAME:STABLE[:CANARY[:WEIGHT]] (repeated for several), or --models FILE\n"
    )


def test_each_model_resumes_its_own_unfinished_rollout(tmp_path: Path) -> None:
    """A restarted `up` gives a model the split its unfinished rollout left, and leaves the
    other models at the split asked for."""
    ranker = LocalRollout.of(tmp_path, "ranker")
    ranker.begin(load_spec(SPEC.replace("digits", "ranker"), "spec"))
    ranker.store.save(RolloutState(phase="Progressing", step=0, weight=20))
    asked = [
        ModelPlan("digits", [1, 2, 3], "1", {"1": 70, "2": 30, "3": 0}),
        ModelPlan("ranker", [1, 2, 3], "1", {"1": 70, "3": 30, "2": 0}),
    ]
    said: list[str] = []
    digits, resumed = (resumed_plan(model, tmp_path, said.append) for model in asked)
    assert digits == asked[0]
    assert resumed == ModelPlan("ranker", [1, 2, 3], "1", {"1": 80, "2": 20, "3": 0})
    assert said == ["gateway: ranker split as the Progressing rollout 1 -> 2 left it: 1=80, 2=20"]


@pytest.mark.parametrize(
    ("model", "line"),
    [
        (
            ModelPlan("digits", [1, 2, 3], "1", {"1": 100, "2": 0, "3": 0}),
            "model digits: stable 1 (versions 1, 2, 3)",
        ),
        (
            ModelPlan("ranker", [3, 4], "3", {"3": 90, "4": 10}),
            "model ranker: stable 3 (versions 3, 4), split 3=90, 4=10",
        ),
    ],
)
def test_the_summary_has_a_line_for_each_model(model: ModelPlan, line: str) -> None:
    assert model.describe() == line
