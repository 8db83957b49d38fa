"""Several models in one `modelcanary up` (issue 21): each with its own stable version,
rollouts, alert rules and shadow comparison. The real `up` as a user runs it serves
`digits` and `digits-b` (the digits versions under a second name); two rollouts run at
once, one promoted, one rolled back by its failing canary, and neither touches the other
model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.local.controller import LocalRollout
from modelcanary.local.dashboard import LocalBackend
from modelcanary.metrics_contract import VERSION_HEADER
from modelcanary.modelrepo.manifest import sha256_file
from modelcanary.rollout.state import RolloutState
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome
from modelcanary.waiting import wait_until
from tests.conftest import metric_value
from tests.support.rollout_spec import rollout_spec
from tests.support.up_process import Up, start_up

pytestmark = pytest.mark.slow
MODELCANARY = str(Path(sys.executable).with_name("modelcanary"))
MODELS = ("digits", "digits-b")
LATENCY_OUT_OF_THE_WAY = ("--set", "latency_p99_max_s=5", "--set", "canary_latency_floor_s=5")


def renamed_copy(repo: Path, model: str, name: str) -> None:
    """Model `model` of the repository again as `name`: its configs and manifests renamed
    (and the manifests' sha256 of the configs made right)."""
    target = repo / name
    shutil.copytree(repo / model, target)
    configs = [target / "config.pbtxt", *sorted((target / "configs").glob("*.pbtxt"))]
    for config in configs:
        config.write_text(config.read_text().replace(f'name: "{model}"', f'name: "{name}"'))
    for manifest in target.glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        data["model"] = name
        for relative in data["files"]:
            data["files"][relative] = sha256_file(target / relative)
        manifest.write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="module")
def up(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    repo = tmp_path_factory.mktemp("two") / "model_repo"
    shutil.copytree(digits_repo, repo)
    renamed_copy(repo, "digits", "digits-b")
    run_dir = tmp_path_factory.mktemp("up") / "run"
    # Latency is not what this module tests (test_rollouts_rollback does): its limits are set
    # far above what a loaded 2-core machine running two models can show.
    models = ["--model", "digits:1", "--model", "digits-b:1", "--versions", "1,2,3"]
    started = start_up(run_dir, "--repo", str(repo), *models, *LATENCY_OUT_OF_THE_WAY)
    try:
        yield started
    finally:
        started.stop()


def admin(up: Up, path: str) -> dict[str, object]:
    token = Path(up.urls["gateway_admin_token_file"]).read_text().strip()
    reply = httpx.get(
        f"{up.urls['gateway']}/admin/{path}", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 200, reply.text
    view: dict[str, object] = reply.json()
    return view


def state(up: Up, model: str) -> RolloutState:
    return LocalRollout.of(up.run_dir, model).store.load() or RolloutState()


def spec(model: str, canary: int) -> dict[str, object]:
    """The stack tests' rollout spec for MODEL 1 -> CANARY, latency out of the way (as above)
    and a longer noData window for two rollouts on one loaded machine."""
    latency = {"maxSeconds": 5, "maxRatioToStable": 10, "ratioFloorSeconds": 5}
    no_data = {"after": "10s", "action": "pause"}
    return rollout_spec(1, canary, {"latencyP99": latency, "noData": no_data}, model=model)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MODELCANARY, *args], capture_output=True, text=True, check=False)


def test_up_serves_and_lists_every_model(up: Up) -> None:
    written = json.loads((up.run_dir / "up.json").read_text())
    assert written["models"] == [{"name": name, "versions": [1, 2, 3]} for name in MODELS]
    assert "model" not in written  # one name would be wrong: `models` has every one
    output = up.output()
    for name in MODELS:
        assert f"model {name}: stable 1 (versions 1, 2, 3)" in output
        split = admin(up, f"models/{name}/weights")
        assert split["stable"] == "1" and split["weights"] == {"1": 100, "2": 0, "3": 0}
        body = request_bodies(Path(up.urls["repo"]), name)[0]
        reply = httpx.post(f"{up.urls['gateway']}/v2/models/{name}/infer", content=body)
        assert reply.status_code == 200, reply.text
    # a pin is the model's own: digits-b version 3 answers, and only its series counts it
    metrics, requests = f"{up.urls['gateway']}/metrics", "modelcanary_gateway_requests_total"
    pinned = httpx.post(
        f"{up.urls['gateway']}/v2/models/digits-b/infer",
        content=body,
        headers={VERSION_HEADER: "3"},
    )
    assert pinned.status_code == 200 and pinned.headers[VERSION_HEADER] == "3", pinned.text
    assert metric_value(metrics, requests, model="digits-b", version="3") == 1
    assert metric_value(metrics, requests, model="digits", version="3") == 0


def test_two_rollouts_run_at_once_and_each_touches_only_its_model(up: Up, tmp_path: Path) -> None:
    repo = Path(up.urls["repo"])
    loads = [
        BackgroundLoad(up.urls["gateway"], name, request_bodies(repo, name), 20).start()
        for name in MODELS
    ]
    processes = {}
    try:
        for name, canary in (("digits", 2), ("digits-b", 3)):
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(spec(name, canary)))
            processes[name] = subprocess.Popen(
                [
                    MODELCANARY,
                    "rollout",
                    "start",
                    "-f",
                    str(path),
                    "--run-dir",
                    str(up.run_dir),
                    "--quiet",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        # both run at once: while digits-b's canary takes traffic, fail it
        progressing = wait_until(lambda: state(up, "digits-b").phase == "Progressing", 90)
        assert progressing, f"digits-b's canary never took traffic: {state(up, 'digits-b')}"
        set_faults(Path(up.urls["faults_dir"]), "digits-b", 3, FaultSpec(error_ratio=0.5))
        # with two rollouts, a command that names none says which there are
        status = run("status", "--run-dir", str(up.run_dir))
        assert status.returncode == 2, status
        assert "several rollouts in" in status.stderr and "(digits, digits-b); name one" in (
            status.stderr
        )
        assert [f.name for f in LocalBackend(up.run_dir).rollouts()] == list(MODELS)
        outputs = {name: p.communicate(timeout=180)[0] for name, p in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)
        set_faults(Path(up.urls["faults_dir"]), "digits-b", 3, FaultSpec())
        for load in loads:
            load.stop()
    assert processes["digits"].returncode == 0, outputs["digits"]
    assert processes["digits-b"].returncode == 1, outputs["digits-b"]
    promoted, rolled_back = state(up, "digits"), state(up, "digits-b")
    assert promoted.phase == "Promoted" and "rollback" not in [
        t.action for t in promoted.history
    ], outputs["digits"]
    assert rolled_back.phase == "RolledBack" and "error" in rolled_back.history[-1].reason.lower()
    assert admin(up, "models/digits/weights")["weights"] == {"1": 0, "2": 100, "3": 0}
    assert admin(up, "models/digits/weights")["stable"] == "2"
    assert admin(up, "models/digits-b/weights")["weights"] == {"1": 100, "2": 0, "3": 0}
    assert admin(up, "models/digits-b/weights")["stable"] == "1"
    # each model's shadow comparison ran on its own canary's pairs
    metrics = f"{up.urls['gateway']}/metrics"
    pairs = "modelcanary_shadow_pairs_total"
    assert metric_value(metrics, pairs, model="digits", version="2") > 0
    assert metric_value(metrics, pairs, model="digits-b", version="3") > 0
    assert metric_value(metrics, pairs, model="digits", version="3") == 0
    # the named status of each is its own
    for name, phase in (("digits", "Promoted"), ("digits-b", "RolledBack")):
        shown = run("status", name, "--run-dir", str(up.run_dir), "-o", "json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["phase"] == phase


def test_a_spec_for_a_model_the_stack_does_not_serve_is_named(up: Up, tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(spec("nosuch", 2)))
    started = run("rollout", "start", "-f", str(path), "--run-dir", str(up.run_dir))
    assert started.returncode == 2, started
    assert started.stderr == (
        f"modelcanary rollout: error: the spec rolls out 'nosuch' but the stack in "
        f"{up.run_dir} serves digits, digits-b\n"
    )
    assert not (up.run_dir / "rollouts" / "nosuch").exists()
