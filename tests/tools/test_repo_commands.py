"""`modelcanary repo list|verify` and `modelcanary examples build` on the digits repository."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelcanary.modelrepo.manifest import sha256_file
from tests.conftest import CliResult, snapshot

pytestmark = pytest.mark.slow
Cli = Callable[..., CliResult]


@pytest.fixture
def repo(digits_repo: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model_repo"
    shutil.copytree(digits_repo, copy)
    return copy


def test_examples_build_trains_different_versions(repo: Path) -> None:
    v1, v2, v3, v4, v5 = (
        json.loads((repo / f"digits/{v}/manifest.json").read_text()) for v in range(1, 6)
    )
    assert 0.8 < float(v1["labels"]["accuracy"]) < float(v2["labels"]["accuracy"])
    assert v1["files"]["1/model.onnx"] != v2["files"]["2/model.onnx"]
    assert float(v4["labels"]["accuracy"]) < 0.02 and v4["labels"]["bug"] == "labels shifted by one"
    assert 0.7 < float(v5["labels"]["accuracy"]) < 0.8
    for version, manifest in enumerate((v1, v2, v3, v4, v5), start=1):
        # the holdout metric is the training script's own held-out accuracy
        logits = manifest["outputs"]["logits"]
        assert logits["kind"] == "classification" and logits["metric"] == "accuracy"
        assert round(logits["holdout"]["value"], 4) == float(manifest["labels"]["accuracy"])
        assert manifest["holdout"] == {"file": "holdout.npz", "samples": 360, "labels": "labels"}
        assert f"{version}/holdout.npz" in manifest["files"]
        assert f"{version}/profile.json" in manifest["files"]
    with np.load(repo / "digits/2/holdout.npz") as holdout:
        assert holdout["inputs/pixels"].shape == (360, 64) and holdout["labels"].shape == (360,)
        with np.load(repo / "digits/2/golden.npz") as golden:
            np.testing.assert_array_equal(golden["inputs/pixels"], holdout["inputs/pixels"][:32])
    with np.load(repo / "digits/2/golden.npz") as golden:
        pixels = golden["inputs/pixels"]
        # real held-out digits, not noise: pixel intensities in [0, 1], sixteen levels
        assert pixels.shape == (32, 64) and pixels.min() >= 0 and pixels.max() <= 1
        assert np.allclose(pixels * 16, np.round(pixels * 16))


def test_examples_build_is_idempotent(cli: Cli, repo: Path) -> None:
    before = snapshot(repo)
    result = cli("examples", "build", "--repo", repo)
    assert result.code == 0
    assert "digits:1 is already in" in result.out and "digits:2 is already in" in result.out
    assert snapshot(repo) == before


def test_verify_passes_on_an_intact_repository(cli: Cli, repo: Path) -> None:
    result = cli("repo", "verify", "--repo", repo)
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ok    digits"] * 5
    assert "5 files match their sha256, 32 golden samples within tolerance" in lines[0]


def test_verify_catches_a_tampered_model_file(cli: Cli, repo: Path) -> None:
    model = repo / "digits/2/model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    result = cli("repo", "verify", "--repo", repo)
    assert result.code == 1
    assert result.out.splitlines()[0].startswith("ok    digits:1")
    assert "FAIL  digits:2: 2/model.onnx has sha256" in result.out
    assert "1 of 5 versions failed verification" in result.err


def test_verify_runs_the_golden_samples_not_only_checksums(cli: Cli, repo: Path) -> None:
    """A model swapped for other weights, with the manifest's checksum forged to match,
    is still caught: its answers to the golden samples are wrong."""
    manifest_path = repo / "digits/2/manifest.json"
    shutil.copy(repo / "digits/1/model.onnx", repo / "digits/2/model.onnx")
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["2/model.onnx"] = sha256_file(repo / "digits/2/model.onnx")
    manifest_path.write_text(json.dumps(manifest))
    result = cli("repo", "verify", "--repo", repo, "digits:2")
    assert result.code == 1
    assert "FAIL  digits:2: golden output 'logits' at batch size 1 is off by" in result.out


def test_verify_catches_a_config_that_disagrees(cli: Cli, repo: Path) -> None:
    config = repo / "digits/config.pbtxt"
    config.write_text(config.read_text().replace("dims: 64", "dims: 65"))
    result = cli("repo", "verify", "--repo", repo, "digits:1")
    assert result.code == 1
    assert (
        "config.pbtxt does not match the manifest: input 'pixels': dims 65 in config.pbtxt, "
        "64 in the manifest"
    ) in result.out


def test_verify_names_unknown_targets(cli: Cli, repo: Path) -> None:
    result = cli("repo", "verify", "--repo", repo, "cats")
    assert result.code == 2 and "no model 'cats' (models: digits)" in result.err
    result = cli("repo", "verify", "--repo", repo, "digits:7")
    assert result.code == 2 and "has no version '7' (versions: 1, 2, 3, 4, 5)" in result.err
    result = cli("repo", "verify", "--repo", repo.parent / "missing")
    assert result.code == 2 and "no such directory" in result.err


def test_verify_reports_a_version_without_manifest(cli: Cli, repo: Path) -> None:
    (repo / "digits/6").mkdir()
    shutil.copy(repo / "digits/2/model.onnx", repo / "digits/6/model.onnx")
    result = cli("repo", "verify", "--repo", repo, "digits:6")
    assert (
        result.code == 1 and "no manifest (was this version exported by modelcanary?)" in result.out
    )


def test_list_shows_models_versions_and_export_facts(cli: Cli, repo: Path) -> None:
    result = cli("repo", "list", "--repo", repo)
    assert result.code == 0
    header, first, second, third, *others = result.out.splitlines()
    columns = "MODEL VERSION SIGNATURE MAX BATCH EXPORTED TORCH OPSET MAX ABS ERR SIZE"
    assert " ".join(header.split()) == columns
    assert first.split()[:6] == ["digits", "1", "pixels:fp32:64", "->", "logits:fp32:10", "32"]
    assert second.split()[:2] == ["digits", "2"] and third.split()[:2] == ["digits", "3"]
    assert [line.split()[:2] for line in others] == [["digits", "4"], ["digits", "5"]]
    rows = json.loads(cli("repo", "list", "--repo", repo, "-o", "json").out)
    expected = [("digits", version, 18) for version in range(1, 6)]
    assert [(r["model"], r["version"], r["opset"]) for r in rows] == expected


def test_exported_graph_names_its_output_as_asked(repo: Path) -> None:
    graph = onnx.load(repo / "digits/1/model.onnx").graph
    assert [i.name for i in graph.input] == ["pixels"]
    assert [o.name for o in graph.output] == ["logits"]


def test_verify_wants_the_holdout_pinned(cli: Cli, repo: Path) -> None:
    manifest_path = repo / "digits/2/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["files"]["2/holdout.npz"]
    manifest_path.write_text(json.dumps(manifest))
    result = cli("repo", "verify", "--repo", repo, "digits:2")
    assert result.code == 1
    assert "FAIL  digits:2: holdout.npz is declared but its sha256 is not in the manifest" in (
        result.out
    )
