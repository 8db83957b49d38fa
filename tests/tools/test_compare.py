"""`modelcanary compare` on the example repository and on a two-output model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelcanary.examples import digits, zoo
from tests.conftest import CliResult

pytestmark = pytest.mark.slow
Cli = Callable[..., CliResult]


def compare_json(cli: Cli, repo: Path, model: str, *args: object) -> Any:
    result = cli("compare", "--repo", repo, "--model", model, *args, "-o", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


# (A, B, top-1 agreement, accuracy of A, accuracy of B, decision). Issue #15 measured 91.7%,
# 98.6% and 0.0% agreement, and 91.4%, 98.1%, 0.3% and 76% accuracy.
DIGITS = [
    (1, 2, 0.917, 0.914, 0.981, "not worse"),  # an honest improvement
    (2, 3, 0.986, 0.981, 0.978, "not worse"),  # a peer
    (2, 4, 0.000, 0.981, 0.003, "worse"),  # labels shifted by one
    (2, 5, 0.775, 0.981, 0.764, "worse"),  # 3 and 8 swapped
]


@pytest.mark.parametrize(("a", "b", "agreement", "acc_a", "acc_b", "decision"), DIGITS)
def test_digits_versions_on_the_holdout(
    cli: Cli,
    digits_repo: Path,
    a: int,
    b: int,
    agreement: float,
    acc_a: float,
    acc_b: float,
    decision: str,
) -> None:
    report = compare_json(cli, digits_repo, "digits", a, b)
    assert report["source"] == f"the holdout of version {a}" and report["samples"] == 360
    (logits,) = report["outputs"]
    (metric,) = report["metrics"]
    agreed, decided = logits["agreement"], metric["decision"]
    stable, canary = metric["stable"]["value"], metric["canary"]["value"]
    print(
        f"digits {a} vs {b}: agreement {agreed:.3f}, accuracy {stable:.3f} -> {canary:.3f}, {decided}"
    )
    assert logits["kind"] == "classification"
    assert logits["agreement"] == pytest.approx(agreement, abs=0.02)
    assert metric["stable"]["value"] == pytest.approx(acc_a, abs=0.01)
    assert metric["canary"]["value"] == pytest.approx(acc_b, abs=0.01)
    assert metric["decision"] == decision
    assert report["drift"] is None  # the holdout is what A's profile was made from


def test_the_label_bug_hides_from_histograms(cli: Cli, digits_repo: Path) -> None:
    """No agreement at all, yet the predicted-class histograms look alike."""
    result = cli("compare", "--repo", digits_repo, "--model", "digits", "2", "4")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert (
        lines[0]
        == "digits: version 2 (A) vs version 4 (B) on the holdout of version 2 (360 samples)"
    )
    row = next(line for line in lines if line.startswith("logits  0.0%"))
    assert float(row.split()[-1]) < 0.02  # class JS divergence
    assert any(
        line.startswith("logits  accuracy  0.98") and line.endswith("worse") for line in lines
    )
    assert "note: drift not measured: version 2's profile was made from these samples" in lines


def test_golden_samples_and_given_samples(cli: Cli, digits_repo: Path, tmp_path: Path) -> None:
    golden = compare_json(cli, digits_repo, "digits", 1, 2, "--on", "golden")
    assert golden["samples"] == 32 and golden["metrics"] == []
    assert "no labelled samples: metrics not checked" in golden["notes"]
    assert golden["drift"]["samples"] == 32

    train_x, train_y, _, _ = digits.dataset()
    samples = tmp_path / "inverted.npz"
    np.savez(samples, pixels=1 - train_x[:300], truth=train_y[:300])
    given = ("--samples", samples, "--labels", "truth")
    result = cli("compare", "--repo", digits_repo, "--model", "digits", "2", "3", *given)
    assert result.code == 0, result.err
    assert f"on {samples} (300 samples)" in result.out
    report = compare_json(
        cli, digits_repo, "digits", 2, 3, "--samples", samples, "--labels", "truth"
    )
    drift = report["drift"]
    assert drift["max_psi"] > 1 and drift["worst"][0]["psi"] > 1
    assert report["metrics"][0]["canary"]["value"] < 0.5


def test_a_manifest_without_declarations_reads_as_numeric(
    cli: Cli, digits_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "model_repo"
    shutil.copytree(digits_repo, repo)
    for version in (1, 2):  # as exported before output kinds, holdouts and profiles existed
        path = repo / f"digits/{version}/manifest.json"
        manifest = json.loads(path.read_text())
        for key in ("outputs", "holdout", "profile"):
            del manifest[key]
        path.write_text(json.dumps(manifest))
    report = compare_json(cli, repo, "digits", 1, 2)
    assert report["source"] == "the golden samples of version 1"
    assert report["outputs"][0]["kind"] == "numeric"
    assert report["notes"] == [
        "output 'logits' has no declared kind: compared as numeric",
        "no labelled samples: metrics not checked",
        "version 1 has no input profile (exported without --samples)",
    ]


def test_a_tampered_holdout_is_refused(cli: Cli, digits_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "model_repo"
    shutil.copytree(digits_repo, repo)
    holdout = repo / "digits/2/holdout.npz"
    data = bytearray(holdout.read_bytes())
    data[-1] ^= 0xFF
    holdout.write_bytes(bytes(data))
    result = cli("compare", "--repo", repo, "--model", "digits", "2", "3")
    assert result.code == 1
    assert "digits/2/holdout.npz does not match the sha256 in its manifest" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--model cats 1 2", "no model 'cats' (models: digits)"),
        ("--model digits 1 9", "model 'digits' has no version 9 (1, 2, 3, 4, 5)"),
        ("--model digits 1 2 --labels y", "--labels needs --samples FILE.npz"),
        ("--model digits 1 2 --metric logits=f1", "unknown metric 'f1'"),
        ("--model digits 1 2 --margin -1", "margin -1.0 must not be negative"),
        ("--model digits 1 2 --confidence 95", "confidence 95.0 must be between 0 and 1"),
        ("--model digits 1 2 --samples x.npz --on golden", "--on chooses A's own samples"),
        ("--model digits 1 2 --samples missing.npz", "--samples missing.npz: no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli: Cli, digits_repo: Path, args: str, message: str) -> None:
    result = cli("compare", "--repo", digits_repo, *args.split())
    assert result.code == 2
    assert message in result.err and result.err.count("\n") == 1


@pytest.fixture(scope="module")
def ranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two versions of zoo.two_tower (a score and an embedding): the second with its score
    layer nudged; a labelled holdout with a target score, mae declared on `score`."""
    from modelcanary.cli import main

    work = tmp_path_factory.mktemp("ranker")
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((120, 16)).astype(np.float32)
    ids = rng.integers(0, 100, size=(120, 4))
    model = zoo.two_tower().eval()
    with torch.no_grad():
        score, _ = model(torch.from_numpy(dense), torch.from_numpy(ids))
    target = score.numpy() + rng.normal(0, 0.05, (120, 1))
    np.savez(work / "samples.npz", dense=dense, ids=ids, target=target)
    nudged = model.state_dict()
    nudged["score.bias"] = nudged["score.bias"] + 0.3
    torch.save(nudged, work / "nudged.pt")
    line = (
        "export --model modelcanary.examples.zoo:two_tower --name ranker"
        " --input dense:fp32:16 --input ids:int64:4 --output score --output embedding"
        " --labels target --metric score=mae --output-kind embedding=numeric"
    )
    base = [*line.split(), "--repo", str(work / "repo"), "--samples", str(work / "samples.npz")]
    assert main(base) == 0
    assert main([*base, "--weights", str(work / "nudged.pt")]) == 0
    return work


def test_two_outputs_compared_as_numbers(cli: Cli, ranker: Path) -> None:
    report = compare_json(cli, ranker / "repo", "ranker", 1, 2)
    score, embedding = report["outputs"]
    assert (score["output"], score["kind"]) == ("score", "numeric")
    assert score["within"] == 0.0 and score["max_abs_diff"] == pytest.approx(0.3, abs=1e-5)
    assert embedding["within"] == 1.0 and embedding["max_abs_diff"] == 0.0
    (mae,) = report["metrics"]
    assert mae["metric"] == "mae" and mae["decision"] == "worse"
    assert mae["stable"]["value"] == pytest.approx(0.04, abs=0.01)
    assert mae["difference"]["low"] > 0.2
    text = cli("compare", "--repo", ranker / "repo", "--model", "ranker", "1", "2").out
    assert "score      0.0%              3.000e-01" in text
    assert "embedding  100.0%            0.000e+00" in text


def test_drift_of_given_samples_names_the_feature(cli: Cli, ranker: Path, tmp_path: Path) -> None:
    with np.load(ranker / "samples.npz") as data:
        dense, ids = data["dense"].copy(), data["ids"]
    dense[:, 7] += 2.0
    np.savez(tmp_path / "moved.npz", dense=dense, ids=ids)
    report = compare_json(cli, ranker / "repo", "ranker", 1, 2, "--samples", tmp_path / "moved.npz")
    assert report["drift"]["worst"][0]["name"] == "dense[7]"
    assert report["metrics"] == []
