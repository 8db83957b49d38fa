"""`modelcanary up` killed and started again: the same URLs, and clients go on.

The documented recovery after `up` was killed with SIGKILL is to run it again with the same
run directory: it stops what the killed one left running and serves on the ports kept in
`ports.json`, so the URLs in up.json (which clients and the controller hold) stay right,
and the gateway takes the split of the rollout the controller was running there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelcanary.load.generator import request_bodies
from modelcanary.local.controller import LocalRollout
from modelcanary.rollout.spec import parse_spec
from modelcanary.rollout.state import RolloutState
from modelcanary.serving.triton_home import TritonHome
from tests.conftest import CliResult
from tests.support.up_process import alive, start_up

pytestmark = pytest.mark.slow
STABLE_AND_CANARY = ("--model", "digits", "--stable", "1", "--canary", "2")
UP = (*STABLE_AND_CANARY, "--canary-weight", "30", "--versions", "1,2")


def answered(client: httpx.Client, url: str, body: bytes) -> bool:
    try:
        return client.post(f"{url}/v2/models/digits/infer", content=body).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_killed_up_started_again_serves_on_the_same_urls(
    digits_repo: Path, triton_home: TritonHome, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    body = request_bodies(digits_repo, "digits")[0]
    first = start_up(run_dir, "--repo", str(digits_repo), *UP)
    client = httpx.Client(timeout=10)  # one client, holding the URL, for the whole test
    second = None
    try:
        assert answered(client, first.urls["gateway"], body)
        leftovers = {
            name: int(str(part["pid"]))
            for name, part in first.parts().items()
            if name in ("triton-0", "prometheus", "alertmanager")
        }
        up = [sys.executable, "-m", "modelcanary", "up", "--run-dir", str(run_dir)]
        command = [*up, "--repo", str(digits_repo), *UP]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.count("\n") == 1 and (
            f"another `modelcanary up` (pid {first.process.pid}) runs in {run_dir}"
            in refused.stderr
        )
        assert first.running() and (run_dir / "up.json").exists()  # untouched

        # a controller in the middle of a rollout: it set 50% and recorded it
        rollout = LocalRollout.of(run_dir, "digits")
        spec = {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}}
        rollout.begin(parse_spec({**spec, "steps": [10, 50, 100]}, "test"))
        rollout.store.save(RolloutState(phase="Progressing", step=1, weight=50))
        token = Path(first.urls["gateway_admin_token_file"]).read_text().strip()
        admin = {"Authorization": f"Bearer {token}"}
        weights = f"{first.urls['gateway']}/admin/models/digits/weights"
        assert client.put(weights, json={"weights": {"1": 50, "2": 50}}, headers=admin).is_success

        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        assert all(alive(pid) for pid in leftovers.values())  # they outlive a killed `up`
        assert not answered(client, first.urls["gateway"], body)

        second = start_up(run_dir, "--repo", str(digits_repo), *UP, out_name="again.out")
        assert second.urls == first.urls
        for name, pid in leftovers.items():
            assert not alive(pid), f"{name} (pid {pid}) of the killed up still runs"
            assert f"stopping {name} (pid {pid}), left running" in second.output()
        assert answered(client, first.urls["gateway"], body), second.output()
        assert client.get(weights, headers=admin).json()["weights"] == {"1": 50, "2": 50}
        assert "gateway: digits split as the Progressing rollout 1 -> 2 left it: 1=50, 2=50" in (
            second.output()
        )
        assert httpx.get(f"{first.urls['prometheus']}/-/ready").status_code == 200
    finally:
        client.close()
        first.stop()
        if second is not None:
            second.stop()


def test_up_names_a_port_that_is_taken(
    cli: Callable[..., CliResult], digits_repo: Path, tmp_path: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        model = ["--model", "digits", "--stable", "1"]
        result = cli(
            "up", "--repo", digits_repo, "--run-dir", tmp_path / "run", "--port", port, *model
        )
    assert result.code == 2
    assert result.err == (
        f"modelcanary up: error: port {port} of the gateway (given with --port) is taken: "
        "Address already in use; choose another --port\n"
    )
    assert not (tmp_path / "run" / "up.json").exists()


def test_up_refuses_a_port_that_is_no_port(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    result = cli("up", "--repo", tmp_path, "--port", "70000", "--model", "digits", "--stable", "1")
    assert result.code == 2
    assert result.err == "modelcanary up: error: --port 70000: not a port number (1 to 65535)\n"
