"""`modelcanary up --replicas 2`: two Triton processes serving every version, the gateway
balancing each version over them, each one supervised, scraped and listed on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from modelcanary.load.generator import request_bodies
from modelcanary.serving.triton_home import TritonHome
from tests.support.up_process import Up, alive, start_up
from tests.support.waits import until

pytestmark = pytest.mark.slow
UP = ("--model", "digits", "--stable", "1", "--canary", "2", "--canary-weight", "50")
UP += ("--versions", "1,2", "--replicas", "2")


def inferences(http: str, version: int) -> int:
    """The successful inferences of a digits version, as one Triton replica counts them."""
    stats = httpx.get(f"{http}/v2/models/digits/versions/{version}/stats", timeout=5).json()
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


def send(
    client: httpx.Client, url: str, body: bytes, count: int, version: int | None = None
) -> list[int]:
    path = f"/v2/models/digits/versions/{version}/infer" if version else "/v2/models/digits/infer"
    codes = []
    for _ in range(count):
        try:
            codes.append(client.post(url + path, content=body).status_code)
        except httpx.HTTPError:
            codes.append(0)
    return codes


def restarted(up: Up, part: str, restarts: int) -> bool:
    status = up.parts()[part]
    return status["state"] == "running" and status["restarts"] == restarts


def test_two_replicas_serve_every_version_and_one_killed_is_skipped_then_restarted(
    digits_repo: Path, triton_home: TritonHome, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    body = request_bodies(digits_repo, "digits")[0]
    up = start_up(run_dir, "--repo", str(digits_repo), *UP)
    client = httpx.Client(timeout=10)
    try:
        replicas = up.urls["triton"]
        assert [r["part"] for r in replicas] == ["triton-0", "triton-1"]  # type: ignore[index]
        assert up.urls["triton_http"] == replicas[0]["http"]  # type: ignore[index]
        ports = json.loads((run_dir / "ports.json").read_text())
        for i, replica in enumerate(replicas):
            prefix = "triton" if i == 0 else f"triton-{i}"
            assert replica["http"].endswith(f":{ports[f'{prefix}_http']}")  # type: ignore[index]
            assert replica["metrics"].endswith(f":{ports[f'{prefix}_metrics']}/metrics")  # type: ignore[index]
        https = [str(r["http"]) for r in replicas]  # type: ignore[index]
        assert len(set(https)) == 2 and set(up.parts()) >= {"triton-0", "triton-1", "gateway"}

        # both replicas serve both versions, balanced
        assert send(client, up.urls["gateway"], body, 40, version=1) == [200] * 40
        assert send(client, up.urls["gateway"], body, 40, version=2) == [200] * 40
        assert [inferences(h, v) for v in (1, 2) for h in https] == [20, 20, 20, 20]
        # and so does gRPC, through the gateway's gRPC server (a supervised part)
        rpc = grpcclient.InferenceServerClient(str(up.urls["gateway_grpc"]))
        pixels = grpcclient.InferInput("pixels", [1, 64], "FP32")
        pixels.set_data_from_numpy(np.zeros((1, 64), dtype=np.float32))
        for _ in range(40):
            rpc.infer("digits", [pixels], model_version="1")
        assert [inferences(h, 1) for h in https] == [40, 40]
        assert up.parts()["gateway gRPC"]["state"] == "running"

        # Prometheus scrapes each replica as a target of its own
        targets = httpx.get(f"{up.urls['prometheus']}/api/v1/targets").json()["data"]
        triton = [t for t in targets["activeTargets"] if t["labels"]["job"] == "triton"]
        assert sorted(t["labels"]["instance"] for t in triton) == sorted(
            r["metrics"].split("/")[2]
            for r in replicas  # type: ignore[index]
        )

        # replica 1 killed: skipped while it is down (at most the first request to it
        # refused), restarted by the supervisor on its ports, serving again
        killed = int(str(up.parts()["triton-1"]["pid"]))
        os.kill(killed, signal.SIGKILL)
        codes: list[int] = []
        while not restarted(up, "triton-1", 1):
            codes += send(client, up.urls["gateway"], body, 5)
            assert len(codes) < 5000, up.output()
        assert codes.count(200) >= len(codes) - 1 and len(codes) > 10, codes
        assert not alive(killed)
        assert "gateway: digits version 1 replica" in up.output()
        assert "supervisor: triton-1 restarted" in up.output()
        assert up.parts()["triton-1"]["pid"] != killed
        before = inferences(https[1], 1)  # counted by the new process
        until(
            lambda: (
                send(client, up.urls["gateway"], body, 2, version=1) == [200, 200]
                and inferences(https[1], 1) > before
            ),
            15,
            "the restarted replica answered nothing",
            context=up.output,
        )
        assert up.parts()["triton-0"]["restarts"] == 0

        # a fault applies to every replica (they read the same fault directory)
        where = ["--run-dir", str(run_dir), "--model", "digits", "--version", "2"]
        fault = [sys.executable, "-m", "modelcanary", "fault", *where]
        subprocess.run([*fault, "--error-ratio", "1"], check=True, capture_output=True)
        for http in https:
            assert send(client, http, body, 3, version=2) == [500] * 3, http
            assert send(client, http, body, 1, version=1) == [200]
        subprocess.run([*fault, "--clear"], check=True, capture_output=True)
        assert [send(client, h, body, 1, version=2) for h in https] == [[200], [200]]
    finally:
        client.close()
        up.stop()
