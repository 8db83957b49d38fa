"""gRPC to several models of one `modelcanary up --replicas 2` (issue 21): the real `up`
serves `digits` (split 50/50 between versions 1 and 2) and `digits-b` (the digits
versions under a second name, stable 1 at 100%, canary 2 at 0%) on two Triton replicas.
Through the gateway's gRPC address each model's requests are answered by that model, split
by its own weights, pinned by its own versions and balanced over both replicas; a client
error is counted on its model only. Then a rollout of digits-b judged on gRPC traffic
alone (no HTTP request: its shadow comparison, error ratio and latency) is promoted."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from scipy.stats import binom
from tritonclient.utils import InferenceServerException

from modelcanary.local.controller import LocalRollout
from modelcanary.metrics_contract import VERSION_HEADER
from modelcanary.rollout.state import RolloutState
from modelcanary.serving.triton_home import TritonHome
from tests.conftest import metric_value
from tests.stack.test_gateway import CLIENT_ERRORS, X
from tests.stack.test_up_models import LATENCY_OUT_OF_THE_WAY, admin, renamed_copy, spec
from tests.support.up_process import Up, start_up

pytestmark = pytest.mark.slow
MODELS = ("digits", "digits-b")
REQUESTS = "modelcanary_gateway_requests_total"
SUCCESS = "nv_inference_request_success"  # a Triton replica's own count


@pytest.fixture(scope="module")
def up(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    repo = tmp_path_factory.mktemp("two") / "model_repo"
    shutil.copytree(digits_repo, repo)
    renamed_copy(repo, "digits", "digits-b")
    models = ["--model", "digits:1:2:50", "--model", "digits-b:1:2:0"]
    versions = ["--versions", "1,2", "--replicas", "2", *LATENCY_OUT_OF_THE_WAY]
    run_dir = tmp_path_factory.mktemp("up") / "run"
    started = start_up(run_dir, "--repo", str(repo), *models, *versions)
    try:
        yield started
    finally:
        started.stop()


def infer(
    client: grpcclient.InferenceServerClient, model: str, x: np.ndarray = X[:1], **options: object
) -> grpcclient.InferResult:
    tensor = grpcclient.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer(model, [tensor], **options)


def answered(client: grpcclient.InferenceServerClient, model: str, count: int) -> Counter[str]:
    """COUNT unpinned requests to MODEL: the versions that answered, each checked to be
    MODEL's own answer."""
    served: Counter[str] = Counter()
    for _ in range(count):
        response = infer(client, model).get_response()
        assert response.model_name == model, response
        served[response.model_version] += 1
    return served


def gateway(up: Up, name: str, **labels: str) -> float:
    return metric_value(f"{up.urls['gateway']}/metrics", name, **labels)


def replicas(up: Up) -> list[dict[str, str]]:
    """up.json's Triton replicas: each one's part name and addresses."""
    found: list[dict[str, str]] = up.urls["triton"]  # type: ignore[assignment]
    return found


def by_replica(up: Up) -> list[dict[tuple[str, str], float]]:
    """Each Triton replica's successful inferences, by (model, version)."""
    return [
        {
            (m, v): metric_value(r["metrics"], SUCCESS, model=m, version=v)
            for m in MODELS
            for v in "12"
        }
        for r in replicas(up)
    ]


def test_grpc_to_two_models_each_split_pinned_and_balanced_on_its_own(up: Up) -> None:
    assert [r["part"] for r in replicas(up)] == ["triton-0", "triton-1"]
    assert admin(up, "models/digits/weights")["weights"] == {"1": 50, "2": 50}
    assert admin(up, "models/digits-b/weights")["weights"] == {"1": 100, "2": 0}
    client = grpcclient.InferenceServerClient(str(up.urls["gateway_grpc"]))
    before = by_replica(up)

    digits, other = answered(client, "digits", 200), answered(client, "digits-b", 60)
    low, high = binom.ppf([1e-6, 1 - 1e-6], 200, 0.5)
    assert set(digits) == {"1", "2"} and low <= digits["2"] <= high, digits
    assert other == {"1": 60}  # its canary at 0% takes nothing
    for model, served in (("digits", digits), ("digits-b", other)):
        for version in "12":  # each model's own series
            counted = gateway(up, REQUESTS, model=model, version=version, code="200")
            assert counted == served[version], (model, version, counted)

    # pinned, by the request's model_version: the model's own version answers
    pinned = infer(client, "digits-b", model_version="2").get_response()
    assert (pinned.model_name, pinned.model_version) == ("digits-b", "2")
    assert gateway(up, REQUESTS, model="digits-b", version="2", code="200") == 1
    assert gateway(up, REQUESTS, model="digits", version="2", code="200") == digits["2"]
    other["2"] += 1
    # or by the metadata key, as HTTP's header does
    header = infer(client, "digits", headers={VERSION_HEADER: "1"}).get_response()
    assert (header.model_name, header.model_version) == ("digits", "1")
    digits["1"] += 1

    # both replicas served each model's versions, half each (round-robin)
    after = by_replica(up)
    for model, served in (("digits", digits), ("digits-b", other)):
        for version in "12":
            grown = [
                a[model, version] - b[model, version] for a, b in zip(after, before, strict=True)
            ]
            assert sum(grown) == served[version], (model, version, grown)
            assert abs(grown[0] - grown[1]) <= 1, (model, version, grown)

    # a client error on digits is digits' client error, nobody's server error
    with pytest.raises(InferenceServerException, match="unexpected shape") as caught:
        infer(client, "digits", np.zeros((1, 63), dtype=np.float32))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert gateway(up, CLIENT_ERRORS, model="digits", reason="invalid_request") == 1
    assert gateway(up, CLIENT_ERRORS, model="digits-b") == 0
    # (answered 400, as over HTTP: a code the error ratio does not count)
    assert gateway(up, REQUESTS, model="digits", code="400") == 1
    assert gateway(up, REQUESTS, model="digits-b", code="400") == 0
    for model in MODELS:
        for code in ("500", "502"):
            assert gateway(up, REQUESTS, model=model, code=code) == 0, (model, code)


class GrpcLoad:
    """Unpinned gRPC requests to one model from a thread, about `rate` a second, until
    stopped: the versions that answered and the failures."""

    def __init__(self, address: str, model: str, rate: float) -> None:
        self.client = grpcclient.InferenceServerClient(address)
        self.model, self.pause = model, 1 / rate
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.pause):
            try:
                self.served[infer(self.client, self.model).get_response().model_version] += 1
            except InferenceServerException as exc:
                self.failures.append(str(exc))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)


def test_a_rollout_judged_on_grpc_traffic_alone_is_promoted(up: Up, tmp_path: Path) -> None:
    before = gateway(up, REQUESTS, model="digits-b", version="2", code="200")
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(spec("digits-b", 2)))
    load = GrpcLoad(str(up.urls["gateway_grpc"]), "digits-b", 20)
    command = [sys.executable, "-m", "modelcanary", "rollout", "start", "-f", str(path)]
    process = subprocess.Popen(
        [*command, "--run-dir", str(up.run_dir), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=240)  # past its 3m progressDeadline
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        load.stop()
    final = LocalRollout.of(up.run_dir, "digits-b").store.load() or RolloutState()
    assert process.returncode == 0 and final.phase == "Promoted", output
    assert [t.action for t in final.history if t.action in ("pause", "rollback")] == [], output
    assert load.failures == [] and load.served["2"] > 0, (load.served, load.failures[:3])
    # the judge counted the canary's gRPC requests (the only traffic there was: the
    # controller's own golden probes are counted apart)
    judged = [float(t.numbers.get("canary_requests", 0)) for t in final.history]
    assert max(judged) > 0, final.history
    grown = gateway(up, REQUESTS, model="digits-b", version="2", code="200") - before
    assert grown == load.served["2"], (grown, load.served)
    # and its shadow gate compared pairs mirrored from stable's gRPC answers
    assert "shadow" in [t.action for t in final.history], final.history
    assert gateway(up, "modelcanary_shadow_pairs_total", model="digits-b", version="2") > 0
    assert gateway(up, "modelcanary_shadow_pairs_total", model="digits") == 0
    assert admin(up, "models/digits-b/weights")["weights"] == {"1": 0, "2": 100}
    assert admin(up, "models/digits/weights")["weights"] == {"1": 50, "2": 50}
    client = grpcclient.InferenceServerClient(str(up.urls["gateway_grpc"]))
    assert answered(client, "digits-b", 5) == {"2": 5}
