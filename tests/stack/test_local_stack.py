"""End to end with the real binaries: Triton, the gateway, Prometheus, Alertmanager.

Traffic to a version with injected failures makes the error-ratio alert fire, and both the
controller's webhook and the on-call receiver get it with the right labels; the healthy
version raises no alert.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as grpcclient
import yaml

from modelcanary.adapters.alertmanager_notifier import NotifyError
from modelcanary.load.generator import request_bodies, run_load
from modelcanary.load.report import LoadReport
from modelcanary.local.monitoring import alertmanager_auth, notifier_for
from modelcanary.local.stack import LocalStack, StackOptions
from modelcanary.modelrepo.holdout_store import read_holdout
from modelcanary.rollout.ports import RolloutEvent
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.serving.triton_home import TritonHome
from tests.conftest import CliResult, metric_value
from tests.support.waits import until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("up")
    options = StackOptions(
        digits_repo,
        "digits",
        stable=1,
        canary=2,
        run_dir=run_dir,
        canary_weight=50,
        versions=(1, 2, 3),
    )
    local = LocalStack(options, say=lambda line: None)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def prometheus(urls: dict[str, str], query: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = httpx.get(
        f"{urls['prometheus']}/api/v1/query", params={"query": query}
    ).json()["data"]["result"]
    return found


def test_a_failing_canary_alerts_the_controller_and_on_call(
    stack: LocalStack, digits_repo: Path
) -> None:
    urls = stack.urls
    reports: list[LoadReport] = []
    bodies = request_bodies(digits_repo, "digits")
    load = threading.Thread(
        target=lambda: reports.append(
            asyncio.run(run_load(urls["gateway"], "digits", bodies, 40, 45))
        )
    )
    load.start()
    try:
        # healthy traffic for most of a window (12 evaluations of the canary's series)
        history = 'count_over_time(modelcanary:requests:rate{model="digits",version="2"}[15s])'

        def twelve_evaluations() -> bool:
            return any(float(r["value"][1]) >= 12 for r in prometheus(urls, history))  # type: ignore[index]

        until(twelve_evaluations, 60, "the canary's healthy traffic was not in Prometheus")
        errors = 'ALERTS{model="digits", alertname="ModelVersionHighErrorRatio"}'
        assert prometheus(urls, f"count_over_time({errors}[15s])") == []
        assert stack.book.firing(model="digits") == []

        set_faults(Path(urls["faults_dir"]), "digits", 2, FaultSpec(error_ratio=0.5))
        faulted = time.monotonic()
        until(
            lambda: stack.book.firing(alertname="ModelVersionHighErrorRatio", version="2"),
            60,
            "no ModelVersionHighErrorRatio alert for version 2 reached the controller's webhook",
        )
        print(f"fault to controller webhook: {time.monotonic() - faulted:.1f} s")
        (alert, *_) = stack.book.firing(alertname="ModelVersionHighErrorRatio", version="2")
        assert alert.labels["model"] == "digits" and alert.labels["severity"] == "critical"
        assert alert.labels["source"] in ("gateway", "triton")
        assert "digits version 2 failed" in alert.annotations["description"]

        oncall_log = Path(urls["oncall_log"])

        def paged() -> list[dict[str, object]]:
            if not oncall_log.exists():
                return []
            records = [json.loads(line) for line in oncall_log.read_text().splitlines()]
            return [
                r
                for r in records
                if r["channel"] == "oncall"
                and r["status"] == "firing"
                and r["labels"]["alertname"] == "ModelVersionHighErrorRatio"  # type: ignore[index]
                and r["labels"]["version"] == "2"  # type: ignore[index]
            ]

        until(lambda: bool(paged()), 30, "the on-call receiver was not paged for version 2")
        assert stack.book.firing(version="1") == []  # the healthy version raised nothing
        firing = httpx.get(f"{urls['prometheus']}/api/v1/alerts").json()["data"]["alerts"]
        assert {a["labels"]["version"] for a in firing if a["state"] == "firing"} == {"2"}
    finally:
        set_faults(Path(urls["faults_dir"]), "digits", 2, FaultSpec())
        load.join()
    (report,) = reports
    by_version = {v.version: v for v in report.versions}
    # the canary's failures reached the users only over the retry budget: the rest were
    # retried on stable (and still counted against the canary, which raised the alert)
    retries = f"{urls['gateway']}/metrics"
    assert metric_value(retries, "modelcanary_gateway_retries_total", outcome="answered") > 0
    over_budget = metric_value(retries, "modelcanary_gateway_retries_total", outcome="over_budget")
    assert by_version["1"].errors == 0
    assert sum(v.errors for v in report.versions) == over_budget


def test_up_wrote_its_urls(stack: LocalStack) -> None:
    written = json.loads((Path(stack.urls["run_dir"]) / "up.json").read_text())
    models = [{"name": "digits", "versions": [1, 2, 3]}]
    assert written == {**stack.urls, "triton": stack.replicas, "models": models}
    targets = httpx.get(f"{stack.urls['prometheus']}/api/v1/targets").json()["data"][
        "activeTargets"
    ]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {"triton": "up", "gateway": "up"}
    ready = f"{stack.urls['alertmanager']}/-/ready"
    assert httpx.get(ready, auth=alertmanager_auth(stack.urls)).status_code == 200
    # gRPC: the gateway's (split like HTTP) and Triton's own
    for address in (stack.urls["gateway_grpc"], stack.urls["triton_grpc"]):
        client = grpcclient.InferenceServerClient(address)
        assert client.is_server_live() and client.is_model_ready("digits")
    ports = json.loads((Path(stack.urls["run_dir"]) / "ports.json").read_text())
    assert stack.urls["gateway_grpc"] == f"127.0.0.1:{ports['gateway_grpc']}"


def test_alertmanager_and_the_pager_refuse_what_the_stack_did_not_send(
    stack: LocalStack,
) -> None:
    """Issue 25 probes 3b and 5: anyone on the machine posted an alert to Alertmanager's API
    (it paged on-call and reached the controller) or a page to the on-call receiver."""
    urls = stack.urls
    now = datetime.now(UTC)
    forged = {
        "labels": {
            "alertname": "ForgedByAStranger",
            "severity": "critical",
            "model": "digits",
            "version": "2",
        },
        "startsAt": now.isoformat(),
    }
    api = f"{urls['alertmanager']}/api/v2/alerts"
    for auth in (None, httpx.BasicAuth("modelcanary", "guessed")):
        assert httpx.post(api, json=[forged], auth=auth).status_code == 401
    page = {
        "version": "4",
        "status": "firing",
        "receiver": "oncall",
        "groupKey": "{}:{}",
        "alerts": [{**forged, "status": "firing", "fingerprint": "f"}],
    }
    assert httpx.post(f"{urls['oncall']}/oncall", json=page).status_code == 401
    # the stack's own: Alertmanager has nothing forged, and the controller's notices go in
    known = httpx.get(api, auth=alertmanager_auth(urls))
    assert known.status_code == 200
    assert not [a for a in known.json() if a["labels"]["alertname"] == "ForgedByAStranger"]
    amtool = [shutil.which("amtool") or "amtool", "alert", "query", "-o", "json"]
    amtool.append(f"--alertmanager.url={urls['alertmanager']}")
    assert subprocess.run(amtool, capture_output=True).returncode != 0
    http_config = Path(urls["run_dir"], "amtool-http.yml")
    login = {"username": "modelcanary", "password_file": urls["alertmanager_password_file"]}
    http_config.write_text(yaml.safe_dump({"basic_auth": login}))
    queried = subprocess.run(
        [*amtool, f"--http.config.file={http_config}"], capture_output=True, text=True, check=True
    )
    assert isinstance(json.loads(queried.stdout), list)
    event = RolloutEvent("paused", "digits", "digits", "1", "2", "a test notice", at=now)
    notifier_for(urls, None).notify(event)
    with pytest.raises(NotifyError, match="refused the event: 401"):
        notifier_for({**urls, "alertmanager_password_file": "/dev/null"}, None).notify(event)


def test_fault_accepts_only_what_the_stack_serves(
    stack: LocalStack, cli: Callable[..., CliResult]
) -> None:
    """Issue 13 defect 7, against the real Triton: a served version gets its fault file, an
    unknown one is refused naming what is served."""
    run_dir = stack.urls["run_dir"]
    target = Path(stack.urls["faults_dir"]) / "digits" / "3.json"
    version_3 = ["--run-dir", run_dir, "--model", "digits", "--version", "3"]
    try:
        result = cli("fault", *version_3, "--latency-ms", "5")
        assert result.code == 0 and target.is_file(), result.err
    finally:
        assert cli("fault", *version_3, "--clear").code == 0
    assert not target.exists()
    unknown = cli(
        "fault", "--run-dir", run_dir, "--model", "digits", "--version", "7", "--error-ratio", "1"
    )
    assert unknown.code == 2 and unknown.err.count("\n") == 1, unknown.err
    assert "does not serve digits version 7 (it serves digits 1, 2, 3)" in unknown.err


def test_up_compares_in_shadow_and_prometheus_records_it(
    stack: LocalStack, digits_repo: Path
) -> None:
    urls = stack.urls
    auth = {"Authorization": f"Bearer {Path(urls['gateway_admin_token_file']).read_text().strip()}"}
    admin = f"{urls['gateway']}/admin/shadow/digits"
    started = httpx.put(admin, json={"canary": "3", "percent": 100}, headers=auth)
    assert started.status_code == 200, started.text
    assert started.json()["kinds"] == {"logits": "classification"}
    inputs, _ = read_holdout(digits_repo / "digits" / "1" / "holdout.npz")
    pixels = inputs["pixels"].astype("float32")
    for start in range(0, 160, 4):
        batch = pixels[start : start + 4]
        tensor = {"name": "pixels", "shape": [4, 64], "datatype": "FP32"}
        response = httpx.post(
            f"{urls['gateway']}/v2/models/digits/infer",
            json={"inputs": [{**tensor, "data": batch.ravel().tolist()}]},
        )
        assert response.status_code == 200
    recorded = 'modelcanary:shadow_pairs:total{model="digits",version="3",kind="classification"}'
    until(lambda: prometheus(urls, f"{recorded} > 0"), 30, "no shadow pairs recorded")
    assert httpx.delete(admin, headers=auth).json() == {"model": "digits", "removed": True}
