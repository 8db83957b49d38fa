"""`modelcanary export` end to end with real torch, onnx and onnxruntime."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelcanary.cli import main
from modelcanary.examples import zoo
from modelcanary.modelrepo import model_config
from modelcanary.modelrepo.manifest import sha256_file
from tests import fixture_models
from tests.conftest import PROJECT, CliResult, snapshot, staging_leftovers

pytestmark = pytest.mark.slow
Cli = Callable[..., CliResult]


def read_config(repo: Path, name: str, pinned: int | None = None) -> model_config.mc.ModelConfig:
    path = repo / name / ("config.pbtxt" if pinned is None else f"configs/v{pinned}.pbtxt")
    return model_config.parse(path.read_text(), str(path))


def torch_run(model: torch.nn.Module, *arrays: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*(torch.from_numpy(a) for a in arrays))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def test_mlp_export_writes_a_verified_repository(cli: Cli, tmp_path: Path) -> None:
    repo = tmp_path / "model_repo"
    line = (
        "export --model modelcanary.examples.zoo:mlp --name mlp --input INPUT__0:fp32:64"
        " --golden-samples 16 --dynamic-batching --preferred-batch-size 4,8"
        " --max-queue-delay-us 100 --instances 2"
    )
    result = cli(*line.split(), "--repo", repo)
    assert result.code == 0, result.err
    assert "exported mlp:1  INPUT__0:fp32:64 -> OUTPUT__0:fp32:10" in result.out
    # the parity table: one row per output and batch size
    assert "OUTPUT__0  1 " in result.out and "OUTPUT__0  8 " in result.out

    files = sorted(p.name for p in (repo / "mlp" / "1").iterdir())
    assert files == ["golden.npz", "manifest.json", "model.onnx"]
    config = read_config(repo, "mlp")
    assert config.backend == "onnxruntime" and config.max_batch_size == 8
    assert config.version_policy.HasField("all")
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.instance_group[0].count == 2
    assert list(read_config(repo, "mlp", pinned=1).version_policy.specific.versions) == [1]

    # ONNX Runtime on fresh inputs, at batch sizes the export did not try, equals PyTorch.
    session = ort.InferenceSession(
        str(repo / "mlp/1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    for batch in (2, 5, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 64)).astype(np.float32)
        (got,) = session.run(None, {"INPUT__0": x})
        np.testing.assert_allclose(got, torch_run(zoo.mlp().eval(), x)[0], atol=1e-5, rtol=1e-4)

    manifest = json.loads((repo / "mlp/1/manifest.json").read_text())
    for relative, digest in manifest["files"].items():
        assert sha256_file(repo / "mlp" / relative) == digest
    assert set(manifest["files"]) == {"1/model.onnx", "1/golden.npz", "configs/v1.pbtxt"}
    assert manifest["tools"]["torch"] == torch.__version__ and manifest["tools"]["opset"] == 18
    assert manifest["parity"]["ok"] and manifest["parity"]["batch_sizes"] == [1, 3, 8]
    assert manifest["signature"]["inputs"] == [{"name": "INPUT__0", "dtype": "fp32", "dims": [64]}]

    with np.load(repo / "mlp/1/golden.npz") as golden:
        assert golden["inputs/INPUT__0"].shape == (16, 64)
        expected = torch_run(zoo.mlp().eval(), golden["inputs/INPUT__0"])[0]
        np.testing.assert_allclose(golden["outputs/OUTPUT__0"], expected, atol=1e-6)


def test_convnet_with_variable_image_size(cli: Cli, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    line = (
        "export --model modelcanary.examples.zoo:convnet --name cnn --input IMAGE:fp32:1x-1x-1"
        " --output LOGITS --max-batch-size 16 --golden-samples 8"
    )
    result = cli(*line.split(), "--repo", repo)
    assert result.code == 0, result.err
    config = read_config(repo, "cnn")
    assert list(config.input[0].dims) == [1, -1, -1]
    assert config.output[0].name == "LOGITS" and list(config.output[0].dims) == [10]
    session = ort.InferenceSession(
        str(repo / "cnn/1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    image = np.random.default_rng(0).standard_normal((3, 1, 12, 5)).astype(np.float32)
    (got,) = session.run(None, {"IMAGE": image})
    np.testing.assert_allclose(got, torch_run(zoo.convnet().eval(), image)[0], atol=1e-5, rtol=1e-4)


def test_two_inputs_two_outputs_and_the_next_version(cli: Cli, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    line = (
        "export --model modelcanary.examples.zoo:two_tower --name ranker"
        " --input dense:fp32:16 --input ids:int64:4 --output score --output embedding"
        " --golden-samples 6"
    )
    args = (*line.split(), "--repo", repo)
    assert cli(*args).code == 0
    second = cli(*args, "--label", "team=search")
    assert second.code == 0, second.err
    assert "exported ranker:2" in second.out
    config = read_config(repo, "ranker")
    assert [(i.name, list(i.dims)) for i in config.input] == [("dense", [16]), ("ids", [4])]
    data_types = [i.data_type for i in config.input]
    assert data_types == [model_config.mc.TYPE_FP32, model_config.mc.TYPE_INT64]
    assert [(o.name, list(o.dims)) for o in config.output] == [("score", [1]), ("embedding", [8])]
    assert list(read_config(repo, "ranker", pinned=2).version_policy.specific.versions) == [2]
    manifest = json.loads((repo / "ranker/2/manifest.json").read_text())
    assert manifest["labels"] == {"team": "search"}
    assert {r["output"] for r in manifest["parity"]["results"]} == {"score", "embedding"}

    session = ort.InferenceSession(
        str(repo / "ranker/2/model.onnx"), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(1)
    dense = rng.standard_normal((5, 16)).astype(np.float32)
    ids = rng.integers(0, 100, size=(5, 4)).astype(np.int64)
    got = session.run(["score", "embedding"], {"dense": dense, "ids": ids})
    for g, want in zip(got, torch_run(zoo.two_tower().eval(), dense, ids), strict=True):
        np.testing.assert_allclose(g, want, atol=1e-5, rtol=1e-4)


def test_unbatched_export_and_gpu_tensorrt_config(cli: Cli, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    line = (
        "export --model modelcanary.examples.zoo:mlp --name fixed --input INPUT__0:fp32:64"
        " --max-batch-size 0 --golden-samples 3 --kind gpu --accelerator tensorrt:fp16"
    )
    result = cli(*line.split(), "--repo", repo)
    assert result.code == 0, result.err
    config = read_config(repo, "fixed")
    assert config.max_batch_size == 0
    assert config.instance_group[0].kind == model_config.mc.ModelInstanceGroup.KIND_GPU
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert "unbatched" in result.out


def test_weights_are_loaded(cli: Cli, tmp_path: Path) -> None:
    model = zoo.mlp()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.5)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    repo = tmp_path / "repo"
    line = "export --model modelcanary.examples.zoo:mlp --name m --input INPUT__0:fp32:64"
    result = cli(*line.split(), "--golden-samples", "4", "--weights", weights, "--repo", repo)
    assert result.code == 0, result.err
    session = ort.InferenceSession(str(repo / "m/1/model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"INPUT__0": np.ones((1, 64), np.float32)})
    np.testing.assert_allclose(got, np.full((1, 10), 0.5 * 32 * (0.5 * 64 + 0.5) + 0.5), rtol=1e-5)
    assert json.loads((repo / "m/1/manifest.json").read_text())["source"]["weights_sha256"] == (
        sha256_file(weights)
    )


@pytest.fixture(scope="module")
def exported_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("seed") / "repo"
    line = "export --model modelcanary.examples.zoo:mlp --name m --input INPUT__0:fp32:64"
    code = main([*line.split(), "--repo", str(repo), "--golden-samples", "4"])
    assert code == 0
    return repo


@pytest.fixture
def seeded_repo(exported_once: Path, tmp_path: Path) -> Path:
    """A fresh copy of a repository holding model `m` version 1 (zoo.mlp)."""
    repo = tmp_path / "repo"
    shutil.copytree(exported_once, repo)
    return repo


BASE = ("--name", "m", "--input", "INPUT__0:fp32:64", "--golden-samples", "4")
MLP = ("export", "--model", "modelcanary.examples.zoo:mlp", *BASE)

# fmt: off
# a table: one case per line, read across
BAD_INPUT = [
    (("--model", "no_such_pkg.models:mlp", *BASE), "module 'no_such_pkg' not found"),
    (("--model", "modelcanary.examples.zoo:nope", *BASE), "has no attribute 'nope'"),
    (("--model", "modelcanary.examples.zoo", *BASE), "is not PKG.MODULE:CALLABLE"),
    (("--model", "tests.fixture_models:not_a_module", *BASE), "returned dict, not a torch.nn.Module"),
    (("--model", "tests.fixture_models:broken_factory", *BASE), "calling it failed: RuntimeError: factory exploded"),
    (("--model", "modelcanary.examples.zoo:mlp", "--name", "m", "--input", "INPUT__0:fp32:8by8"), "DIMS '8by8' is not valid"),
    (("--model", "modelcanary.examples.zoo:mlp", "--name", "m", "--input", "INPUT__0:float42:64"), "unknown dtype 'float42'"),
    (("--model", "modelcanary.examples.zoo:mlp", "--name", "m", "--input", "INPUT__0:fp32:32"), "the model failed on sample inputs"),
    (("--model", "tests.fixture_models:unexportable", *BASE), "torch cannot export the model to ONNX"),
    (("--model", "modelcanary.examples.zoo:mlp", *BASE, "--output", "a", "--output", "b"), "2 --output name(s) given, but the model returns 1"),
    (("--model", "modelcanary.examples.zoo:mlp", *BASE, "--version", "1"), "already exists; pass --force to replace version 1"),
    (("--model", "tests.fixture_models:wider_mlp", *BASE), "output 'OUTPUT__0': dims 10 in the existing config, 12 in this export"),
    (("--model", "modelcanary.examples.zoo:mlp", "--name", "m", "--input", "X:fp32:64", "--golden-samples", "4"), "inputs: ['INPUT__0'] in the existing config, ['X'] in this export"),
    (("--model", "modelcanary.examples.zoo:mlp", "--name", "../evil", "--input", "INPUT__0:fp32:64"), "--name '../evil' is not a valid model name"),
    (("--model", "modelcanary.examples.zoo:mlp", *BASE, "--accelerator", "tensorrt"), "add --kind gpu"),
    (("--model", "modelcanary.examples.zoo:mlp", *BASE, "--preferred-batch-size", "4"), "need --dynamic-batching"),
    (("--model", "modelcanary.examples.zoo:mlp", "--name", "m", "--input", "INPUT__0:fp32:64", "--golden-samples", "1"), "--golden-samples must be at least 2"),
    (("--model", "tests.fixture_import_error:model", *BASE), "importing 'tests.fixture_import_error' failed: ModuleNotFoundError: BertTokenizer requires the tokenizers library; pip install tokenizers"),
    (("--model", "tests.fixture_models:nested_heads", *BASE), "the model's output 'hidden_states' is a tuple; return a tensor, a tuple of tensors or a mapping"),
]
BAD_INPUT_IDS = [
    "unknown-module", "unknown-callable", "no-callable", "not-a-module", "factory-raises",
    "bad-dims", "unknown-dtype", "wrong-dims-for-model", "unexportable", "output-count",
    "existing-version", "signature-dims", "signature-names", "bad-name", "trt-on-cpu",
    "preferred-without-dynamic", "too-few-samples", "import-error-without-name",
    "nested-output",
]
# fmt: on


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=BAD_INPUT_IDS)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    cli: Cli, seeded_repo: Path, args: tuple[str, ...], message: str
) -> None:
    before = snapshot(seeded_repo)
    result = cli("export", *args, "--repo", seeded_repo)
    assert result.code == 2
    assert message in result.err
    assert result.err.startswith("modelcanary export: error: ")
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert snapshot(seeded_repo) == before
    assert staging_leftovers(seeded_repo) == []


def one_line(result: CliResult) -> str:
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
    return result.err


def test_a_repository_that_is_a_file_is_refused_before_the_export(cli: Cli, tmp_path: Path) -> None:
    """Issue 13 defect 6: a traceback, after the whole export ran."""
    repo = tmp_path / "repo"
    repo.write_text("not a repository")
    result = cli(*MLP, "--repo", repo)
    assert f"--repo {repo}: {repo} is not a directory" in one_line(result)
    assert "exporting" not in result.out  # refused before any work
    assert repo.read_text() == "not a repository"


def test_a_read_only_repository_is_refused_before_the_export(
    cli: Cli, seeded_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 defect 6: a traceback, after the whole export ran. Made read-only with
    chmod; root writes anywhere, so there the file system's refusal is simulated."""
    from modelcanary.modelrepo import repository

    before = snapshot(seeded_repo)
    if os.geteuid() == 0:

        def read_only(directory: Path) -> None:
            raise PermissionError(errno.EROFS, "Read-only file system", str(directory))

        monkeypatch.setattr(repository, "_probe", read_only)
    else:
        seeded_repo.chmod(0o555)
    try:
        result = cli(*MLP, "--repo", seeded_repo)
    finally:
        seeded_repo.chmod(0o755)
    assert f"--repo {seeded_repo}: cannot write to {seeded_repo.resolve()}" in one_line(result)
    assert "exporting" not in result.out
    assert snapshot(seeded_repo) == before


def test_a_repository_that_fails_while_publishing_is_one_line_and_unchanged(
    cli: Cli, seeded_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that refuses a write midway (full, remounted read-only): one line,
    and the repository as it was."""
    from modelcanary.modelrepo import repository

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(repository, "_write", full)
    before = snapshot(seeded_repo)
    result = cli("export", "--model", "modelcanary.examples.zoo:mlp", *BASE, "--repo", seeded_repo)
    err = one_line(result)
    assert f"--repo {seeded_repo}: cannot publish version 2: No space left on device" in err
    assert "the repository is as it was" in err
    assert snapshot(seeded_repo) == before
    assert staging_leftovers(seeded_repo) == []


def test_weights_that_do_not_fit(cli: Cli, seeded_repo: Path, tmp_path: Path) -> None:
    weights = tmp_path / "convnet.pt"
    torch.save(zoo.convnet().state_dict(), weights)
    before = snapshot(seeded_repo)
    result = cli(*MLP, "--weights", weights, "--repo", seeded_repo)
    assert result.code == 2
    assert f"--weights {weights} do not fit the model: Missing key(s)" in result.err
    assert result.err.count("\n") == 1
    assert snapshot(seeded_repo) == before


def test_parity_failure_names_the_output_and_writes_nothing(cli: Cli, seeded_repo: Path) -> None:
    before = snapshot(seeded_repo)
    result = cli("export", "--model", "tests.fixture_models:drifting", *BASE, "--repo", seeded_repo)
    assert result.code == 1
    assert "error: output 'OUTPUT__0' differs from PyTorch at batch size" in result.err
    assert "max abs err" in result.err and "nothing was written" in result.err
    assert "FAIL" in result.out  # the parity table shows which rows failed
    assert snapshot(seeded_repo) == before


def test_force_replaces_a_version(cli: Cli, seeded_repo: Path) -> None:
    before = snapshot(seeded_repo)
    force = ["--version", "1", "--force", "--golden-samples", "6"]
    result = cli(*MLP, *force, "--repo", seeded_repo)
    assert result.code == 0, result.err
    after = snapshot(seeded_repo)
    assert after.keys() == before.keys()
    assert after["m/1/golden.npz"] != before["m/1/golden.npz"]
    assert staging_leftovers(seeded_repo) == []


def test_interrupted_publication_leaves_the_repository_as_it_was(
    cli: Cli, seeded_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between the renames that publish a replaced version rolls every rename back."""
    before = snapshot(seeded_repo)
    real_rename = Path.rename
    calls: list[Path] = []

    def rename_then_interrupt(self: Path, target: Path) -> Path:
        calls.append(target)
        if len(calls) == 4:  # old version and pinned config moved aside, new version placed
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_then_interrupt)
    force = ["--version", "1", "--force", "--golden-samples", "6"]
    result = cli(*MLP, *force, "--repo", seeded_repo)
    monkeypatch.setattr(Path, "rename", real_rename)
    assert result.code == 130 and "interrupted" in result.err
    assert len(calls) >= 4
    assert snapshot(seeded_repo) == before
    assert staging_leftovers(seeded_repo) == []


def test_console_script_reports_without_traceback(tmp_path: Path) -> None:
    line = "-m modelcanary export --model modelcanary.examples.zoo:mlp --name m --input x:fp32:64:9"
    argv = [sys.executable, *line.split(), "--repo", str(tmp_path / "r")]
    completed = subprocess.run(argv, capture_output=True, text=True, cwd=PROJECT, check=False)
    assert completed.returncode == 2
    assert completed.stderr == (
        "modelcanary export: error: --input 'x:fp32:64:9' is not NAME:DTYPE:DIMS "
        "(e.g. INPUT__0:fp32:64 or IMAGE:fp32:1x8x8)\n"
    )
    assert not (tmp_path / "r").exists()


def test_usage_errors_from_argparse_are_one_line(cli: Cli) -> None:
    result = cli("export", "--name", "m")
    assert result.code == 2
    assert result.err == (
        "modelcanary export: error: the following arguments are required: --model, --input "
        "(see --help)\n"
    )


def test_output_name_that_collides_with_an_internal_value(cli: Cli, tmp_path: Path) -> None:
    """`linear` is also the exporter's name for the first layer's result inside the graph."""
    repo = tmp_path / "repo"
    result = cli(*MLP, "--output", "linear", "--repo", repo)
    assert result.code == 0, result.err
    session = ort.InferenceSession(str(repo / "m/1/model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["linear"]
    x = np.ones((2, 64), np.float32)
    np.testing.assert_allclose(
        session.run(None, {"INPUT__0": x})[0], torch_run(zoo.mlp().eval(), x)[0], atol=1e-5
    )


def test_sigterm_during_export_leaves_the_repository_as_it_was(seeded_repo: Path) -> None:
    """A real process, terminated while it exports: it exits 130 and changes nothing."""
    before = snapshot(seeded_repo)
    argv = [sys.executable, "-m", "modelcanary", *MLP, "--version", "1", "--force"]
    process = subprocess.Popen(
        [*argv, "--repo", str(seeded_repo)],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("exporting")  # inside the export now
    process.terminate()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted; nothing was changed" in err
    assert snapshot(seeded_repo) == before
    assert staging_leftovers(seeded_repo) == []


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """100 samples for zoo.mlp (INPUT__0:fp32:64 -> 10 scores) with class labels `y`,
    float labels `target` and labels out of range `bad`."""
    rng = np.random.default_rng(0)
    path = tmp_path / "labelled.npz"
    inputs = rng.standard_normal((100, 64)).astype(np.float32)
    classes, scores = rng.integers(0, 10, 100), rng.standard_normal((100, 10))
    bad, short = np.full(100, 10), np.zeros(99, dtype=np.int64)
    np.savez(path, INPUT__0=inputs, y=classes, target=scores, bad=bad, short=short)
    return path


def test_labelled_holdout_metric_kind_and_profile(cli: Cli, tmp_path: Path, labelled: Path) -> None:
    repo = tmp_path / "repo"
    line = (
        "export --model modelcanary.examples.zoo:mlp --name m --input INPUT__0:fp32:64"
        " --labels y --metric OUTPUT__0=top-k:3 --output-kind OUTPUT__0=classification"
    )
    result = cli(*line.split(), "--samples", labelled, "--repo", repo)
    assert result.code == 0, result.err
    assert "holdout: OUTPUT__0 top-k:3 0.3800 on 100 labelled samples" in result.out
    manifest = json.loads((repo / "m/1/manifest.json").read_text())
    entry = manifest["outputs"]["OUTPUT__0"]
    assert entry["kind"] == "classification" and entry["metric"] == "top-k:3"
    assert entry["holdout"]["low"] < entry["holdout"]["value"] < entry["holdout"]["high"]
    assert manifest["holdout"] == {"file": "holdout.npz", "samples": 100, "labels": "labels"}
    assert manifest["profile"] == {"file": "profile.json", "samples": 100}
    for name in ("holdout.npz", "profile.json"):
        assert manifest["files"][f"1/{name}"] == sha256_file(repo / "m/1" / name)
    with np.load(repo / "m/1/holdout.npz") as holdout, np.load(labelled) as source:
        np.testing.assert_array_equal(holdout["labels"], source["y"])
        np.testing.assert_array_equal(holdout["inputs/INPUT__0"], source["INPUT__0"])
    with np.load(repo / "m/1/golden.npz") as golden:
        assert golden["inputs/INPUT__0"].shape == (32, 64)  # golden samples: the first 32
    profile = json.loads((repo / "m/1/profile.json").read_text())
    assert profile["samples"] == 100 and len(profile["features"]) == 64

    result = cli("repo", "verify", "--repo", repo)
    assert result.code == 0 and "5 files match their sha256" in result.out
    holdout = repo / "m/1/holdout.npz"
    data = bytearray(holdout.read_bytes())
    data[-1] ^= 0xFF
    holdout.write_bytes(bytes(data))
    result = cli("repo", "verify", "--repo", repo)
    assert result.code == 1 and "FAIL  m:1: 1/holdout.npz has sha256" in result.out


def test_error_metrics_and_numeric_outputs(cli: Cli, tmp_path: Path, labelled: Path) -> None:
    repo = tmp_path / "repo"
    line = (
        "export --model modelcanary.examples.zoo:mlp --name m --input INPUT__0:fp32:64"
        " --labels target --metric OUTPUT__0=rmse"
    )
    result = cli(*line.split(), "--samples", labelled, "--repo", repo)
    assert result.code == 0, result.err
    entry = json.loads((repo / "m/1/manifest.json").read_text())["outputs"]["OUTPUT__0"]
    assert entry["kind"] == "numeric" and entry["metric"] == "rmse"
    assert 0.9 < entry["holdout"]["value"] < 1.2  # small outputs against standard normal labels


def test_random_samples_have_no_profile_and_outputs_read_numeric(
    cli: Cli, seeded_repo: Path
) -> None:
    manifest = json.loads((seeded_repo / "m/1/manifest.json").read_text())
    assert manifest["outputs"] == {"OUTPUT__0": {"kind": "numeric"}}
    assert "holdout" not in manifest and "profile" not in manifest


# fmt: off
# a table: one case per line, read across
BAD_HOLDOUT = [
    (("--labels", "y", "--metric", "OUTPUT__0=accuracy"), "--labels needs --samples FILE.npz"),
    (("--metric", "OUTPUT__0=accuracy", "--samples", "{samples}"), "--metric needs --labels KEY"),
    (("--labels", "y", "--samples", "{samples}"), "--labels needs a --metric OUTPUT=METRIC"),
    (("--output-kind", "OUTPUT__0=logits"), "--output-kind OUTPUT__0: unknown output kind 'logits'; use classification or numeric"),
    (("--output-kind", "OUTPUT__0"), "--output-kind 'OUTPUT__0' is not OUTPUT=VALUE"),
    (("--output-kind", "score=numeric"), "--output-kind score: the model has no output 'score' (outputs: OUTPUT__0)"),
    (("--output-kind", "OUTPUT__0=numeric", "--output-kind", "OUTPUT__0=numeric"), "--output-kind names output 'OUTPUT__0' more than once"),
    (("--samples", "{samples}", "--labels", "y", "--metric", "OUTPUT__0=f1"), "unknown metric 'f1'; use one of: accuracy, top-k:K, mae, rmse"),
    (("--samples", "{samples}", "--labels", "nope", "--metric", "OUTPUT__0=accuracy"), "--labels nope: "),
    (("--samples", "{samples}", "--labels", "short", "--metric", "OUTPUT__0=accuracy"), "has 99 labels for 100 samples"),
    (("--samples", "{samples}", "--labels", "bad", "--metric", "OUTPUT__0=accuracy"), "the labels of output 'OUTPUT__0' must be class indices from 0 to 9"),
    (("--samples", "{samples}", "--labels", "y", "--metric", "OUTPUT__0=mae"), "mae needs the same shape"),
]
BAD_HOLDOUT_IDS = [
    "labels-without-samples", "metric-without-labels", "labels-without-metric", "unknown-kind",
    "kind-syntax", "kind-unknown-output", "kind-twice", "unknown-metric", "missing-labels",
    "label-count", "labels-out-of-range", "labels-shape",
]
# fmt: on


@pytest.mark.parametrize(("args", "message"), BAD_HOLDOUT, ids=BAD_HOLDOUT_IDS)
def test_bad_holdout_declarations_are_one_line_exit_2_and_change_nothing(
    cli: Cli, seeded_repo: Path, labelled: Path, args: tuple[str, ...], message: str
) -> None:
    before = snapshot(seeded_repo)
    filled = [a.replace("{samples}", str(labelled)) for a in args]
    result = cli(*MLP, *filled, "--repo", seeded_repo)
    assert result.code == 2, result.out
    assert message in result.err and result.err.count("\n") == 1
    assert snapshot(seeded_repo) == before


def test_a_classification_output_needs_classes(cli: Cli, tmp_path: Path) -> None:
    line = (
        "export --model modelcanary.examples.zoo:two_tower --name ranker"
        " --input dense:fp32:16 --input ids:int64:4 --output score --output embedding"
        " --output-kind score=classification"
    )
    result = cli(*line.split(), "--repo", tmp_path)
    assert result.code == 2
    assert "--output-kind score=classification: the output has dims [1]" in result.err


def test_quantize_int8_publishes_the_smaller_graph(
    cli: Cli, tmp_path: Path, labelled: Path
) -> None:
    repo = tmp_path / "repo"
    line = (
        "export --model modelcanary.examples.zoo:mlp --name m --input INPUT__0:fp32:64"
        " --labels y --metric OUTPUT__0=accuracy --output-kind OUTPUT__0=classification"
        " --quantize int8"
    )
    result = cli(*line.split(), "--samples", labelled, "--repo", repo)
    assert result.code == 0, result.err
    assert "int8 against fp32 on 100 samples: OUTPUT__0 100.0% top-1" in result.out
    manifest = json.loads((repo / "m/1/manifest.json").read_text())
    quantization = manifest["quantization"]
    assert quantization["int8_bytes"] == (repo / "m/1/model.onnx").stat().st_size
    assert quantization["int8_bytes"] < quantization["fp32_bytes"] / 2
    assert quantization["metrics"][0]["decision"] == "not worse"
    assert manifest["fp32_parity"]["atol"] == 1e-4 and manifest["parity"]["atol"] == 0.1
    graph = onnx.load(repo / "m/1/model.onnx").graph
    assert "MatMulInteger" in {node.op_type for node in graph.node}
    session = ort.InferenceSession(str(repo / "m/1/model.onnx"), providers=["CPUExecutionProvider"])
    with np.load(repo / "m/1/golden.npz") as golden:  # the int8 answers, one sample at a time
        first = golden["inputs/INPUT__0"][:1]
        np.testing.assert_array_equal(
            session.run(None, {"INPUT__0": first})[0], golden["outputs/OUTPUT__0"][:1]
        )
    assert cli("repo", "verify", "--repo", repo).code == 0


def test_quantize_int8_a_model_with_two_outputs(cli: Cli, tmp_path: Path) -> None:
    """Issue 15: each output is judged by its kind (numeric: within tolerance) and the
    declared metric by the paired difference on the holdout."""
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((120, 16)).astype(np.float32)
    ids = rng.integers(0, 100, size=(120, 4))
    with torch.no_grad():
        score, _ = zoo.two_tower().eval()(torch.from_numpy(dense), torch.from_numpy(ids))
    samples = tmp_path / "samples.npz"
    np.savez(samples, dense=dense, ids=ids, target=score.numpy() + rng.normal(0, 0.05, (120, 1)))
    repo = tmp_path / "repo"
    line = (
        "export --model modelcanary.examples.zoo:two_tower --name ranker"
        " --input dense:fp32:16 --input ids:int64:4 --output score --output embedding"
        " --labels target --metric score=mae --quantize int8"
    )
    result = cli(*line.split(), "--samples", samples, "--repo", repo)
    assert result.code == 0, result.err
    assert (
        "int8 against fp32 on 120 samples: score 100.0% within tolerance, embedding 100.0% "
        "within tolerance"
    ) in result.out
    quantization = json.loads((repo / "ranker/1/manifest.json").read_text())["quantization"]
    assert [o["output"] for o in quantization["outputs"]] == ["score", "embedding"]
    assert quantization["metrics"][0]["metric"] == "mae"
    assert quantization["metrics"][0]["decision"] == "not worse"
    assert cli("repo", "verify", "--repo", repo).code == 0


def test_quantize_refuses_a_graph_beyond_the_limits(cli: Cli, seeded_repo: Path) -> None:
    before = snapshot(seeded_repo)
    tight = ["--quantize", "int8", "--quantize-atol", "1e-6", "--quantize-rtol", "0"]
    result = cli(*MLP, "--repo", seeded_repo, *tight)
    assert result.code == 1
    assert (
        "the int8 graph is too far from fp32: output 'OUTPUT__0': share within atol 1e-06, rtol 0 with fp32 is"
        in result.err
    )
    assert "nothing was written" in result.err and snapshot(seeded_repo) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--quantize int4", "--quantize 'int4' is not supported; use int8"),
        (
            "--quantize int8 --quantize-min-agreement 2",
            "--quantize-min-agreement must be between 0 and 1",
        ),
        ("--quantize int8 --quantize-margin -1", "must not be negative"),
    ],
)
def test_bad_quantize_options(cli: Cli, seeded_repo: Path, args: str, message: str) -> None:
    result = cli(*MLP, *args.split(), "--repo", seeded_repo)
    assert result.code == 2 and message in result.err


@pytest.mark.parametrize("factory", ["dict_heads", "model_output_heads"])
def test_a_model_returning_a_mapping_exports_outputs_named_by_its_keys(
    cli: Cli, tmp_path: Path, factory: str
) -> None:
    repo = tmp_path / "repo"
    line = f"export --model tests.fixture_models:{factory} --name heads --input x:fp32:16"
    result = cli(*line.split(), "--golden-samples", "8", "--repo", repo)
    assert result.code == 0, result.err
    assert "x:fp32:16 -> logits:fp32:3, embedding:fp32:8" in result.out
    session = ort.InferenceSession(
        str(repo / "heads/1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    x = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    logits, embedding = session.run(None, {"x": x})
    with torch.no_grad():
        expected = fixture_models.dict_heads()(torch.from_numpy(x))
    np.testing.assert_allclose(logits, expected["logits"].numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(embedding, expected["embedding"].numpy(), atol=1e-5, rtol=1e-4)
    manifest = json.loads((repo / "heads/1/manifest.json").read_text())
    assert [o["name"] for o in manifest["signature"]["outputs"]] == ["logits", "embedding"]
    assert manifest["parity"]["ok"]


def test_output_names_override_a_mappings_keys(cli: Cli, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    line = (
        "export --model tests.fixture_models:dict_heads --name heads --input x:fp32:16"
        " --golden-samples 4 --output scores --output vector"
    )
    result = cli(*line.split(), "--repo", repo)
    assert result.code == 0, result.err
    assert "x:fp32:16 -> scores:fp32:3, vector:fp32:8" in result.out


def test_seed_makes_two_exports_of_an_unseeded_factory_byte_identical(
    cli: Cli, tmp_path: Path
) -> None:
    def export(repo: Path, *seed: str) -> bytes:
        line = (
            "export --model tests.fixture_models:unseeded_mlp --name m --input INPUT__0:fp32:64"
            " --golden-samples 4"
        )
        result = cli(*line.split(), "--repo", repo, *seed)
        assert result.code == 0, result.err
        return (repo / "m/1/model.onnx").read_bytes()

    first = export(tmp_path / "a", "--seed", "7")
    assert export(tmp_path / "b", "--seed", "7") == first
    assert json.loads((tmp_path / "a/m/1/manifest.json").read_text())["source"]["seed"] == 7
    # the factory really is unseeded: without --seed, the weights differ
    assert export(tmp_path / "c") != export(tmp_path / "d")
    assert json.loads((tmp_path / "c/m/1/manifest.json").read_text())["source"]["seed"] is None
