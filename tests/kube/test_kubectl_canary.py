"""`kubectl canary` against kmock (an in-memory Kubernetes API), through a real kubeconfig."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import pytest_asyncio
import yaml

from modelcanary.adapters.status_store import INTENT_ANNOTATION, status_fields
from modelcanary.kubectl.plugin import list_rows, main
from modelcanary.rollout.judge import Check
from modelcanary.rollout.state import LastAnalysis, RolloutState, Transition
from tests.conftest import register_kind, write_kubeconfig

MC = "/apis/modelcanary.io/v1alpha1/namespaces/{ns}/modelcanaries"
T0 = 1_795_000_000.0


@dataclass
class Run:
    code: int
    out: str
    err: str


Kubectl = Callable[..., Any]


def resource(name: str, ns: str, state: RolloutState | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "modelcanary.io/v1alpha1", "kind": "ModelCanary",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-11-18T11:06:40Z"},
        "spec": {"model": name, "stable": {"version": "1"}, "canary": {"version": "2"},
                 "steps": [10, 50, 100], "interval": "30s", **spec},
    }  # fmt: skip
    if state is not None:
        body["status"] = status_fields(state)
    return body


PROGRESSING = RolloutState(
    phase="Progressing", step=1, weight=50, started_at=T0 - 60, step_started_at=T0 - 12,
    history=(Transition(T0 - 60, "start", "Progressing", 0, 10, "golden samples match"),
             Transition(T0 - 12, "advance", "Progressing", 1, 50, "checks passed; step 2")),
    analysis=LastAnalysis(T0 - 1, "pass", (Check("error_ratio", 0.002, 0.01, 140, "pass"),), (),
                          "step 2 healthy; 18s left"),
)  # fmt: skip
ROLLED_BACK = RolloutState(
    phase="RolledBack", step=0, weight=0, started_at=T0 - 60,
    history=(Transition(T0 - 5, "rollback", "RolledBack", 0, 0, "alert X fired", by="controller"),),
)  # fmt: skip


@pytest_asyncio.fixture
async def kubectl(
    kmock: kmock.KubernetesEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Any:
    register_kind(kmock, "modelcanary.io/v1alpha1/modelcanaries", "ModelCanary")
    config = write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    async with aiohttp.ClientSession(base_url=str(kmock.url)) as session:

        async def create(body: dict[str, Any]) -> None:
            path = MC.format(ns=body["metadata"]["namespace"])
            async with session.post(path, json=body) as response:
                assert response.status < 300

        async def get(ns: str, name: str) -> dict[str, Any]:
            async with session.get(f"{MC.format(ns=ns)}/{name}") as response:
                found: dict[str, Any] = await response.json()
                return found

        async def run(*args: str) -> Run:
            capsys.readouterr()
            try:
                code = await asyncio.to_thread(main, ["--kubeconfig", str(config), *args])
            except SystemExit as exc:
                code = int(exc.code or 0)
            captured = capsys.readouterr()
            return Run(code, captured.out, captured.err)

        await create(resource("digits", "default", PROGRESSING))
        await create(resource("cats", "default", ROLLED_BACK))
        await create(resource("owls", "prod", None))
        await create(resource("bad", "default", None, steps=[50, 20]))
        run.get = get  # type: ignore[attr-defined]
        yield run


def test_list_table_snapshot() -> None:
    items = [resource("digits", "default", PROGRESSING), resource("cats", "prod", ROLLED_BACK)]
    rows = list_rows(items, all_namespaces=True, now=T0 + 3 * 3600)
    assert "\n".join("  ".join(r) for r in rows) == "\n".join([
        "NAMESPACE  NAME  PHASE  MODEL  STABLE  CANARY  WEIGHT  STEP  AGE",
        "default  digits  Progressing  digits  1  2  50%  2/3  3h",
        "prod  cats  RolledBack  cats  1  2  0%  1/3  3h",
    ])  # fmt: skip


@pytest.mark.asyncio
async def test_list_in_a_namespace_and_everywhere(kubectl: Any) -> None:
    here = await kubectl("list")
    assert here.code == 0
    lines = here.out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "PHASE",
        "MODEL",
        "STABLE",
        "CANARY",
        "WEIGHT",
        "STEP",
        "AGE",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["bad", "cats", "digits"]
    everywhere = await kubectl("list", "-A")
    assert "owls" in everywhere.out and everywhere.out.splitlines()[0].startswith("NAMESPACE")
    prod = await kubectl("list", "--context", "prod", "-o", "json")
    assert [i["metadata"]["name"] for i in json.loads(prod.out)] == ["owls"]


@pytest.mark.asyncio
async def test_status_shows_checks_time_left_and_history(kubectl: Any) -> None:
    shown = await kubectl("status", "digits")
    assert shown.code == 0
    for line in ("phase     Progressing", "step      2/3 (50%)", "error_ratio", "history:",
                 "checks passed; step 2"):  # fmt: skip
        assert line in shown.out
    as_json = json.loads((await kubectl("status", "digits", "-o", "json")).out)
    assert as_json["weight"] == 50 and as_json["checks"][0]["samples"] == 140
    as_yaml = yaml.safe_load((await kubectl("status", "digits", "-o", "yaml")).out)
    assert as_yaml["phase"] == "Progressing"
    history = await kubectl("history", "digits")
    assert "golden samples match" in history.out and "advance" in history.out


@pytest.mark.asyncio
async def test_verbs_record_intents_only_where_allowed(kubectl: Any) -> None:
    promoted = await kubectl("promote", "digits", "--full", "--reason", "numbers look great")
    assert promoted.code == 0 and "promote --full requested by ana" in promoted.out
    body = await kubectl.get("default", "digits")
    intent = json.loads(body["metadata"]["annotations"][INTENT_ANNOTATION])
    assert intent["action"] == "promote_full" and intent["by"] == "ana" and intent["id"]
    assert intent["reason"] == "numbers look great"
    assert "canaryTrafficPercent" not in json.dumps(body)  # the plugin never touches traffic

    refused = await kubectl("resume", "digits")
    assert refused.code == 1
    assert "cannot resume: the rollout is Progressing; resume needs Paused" in refused.err
    assert "allowed now: promote, promote --full, rollback, pause" in refused.err
    assert (await kubectl("retry", "cats")).code == 0
    not_now = await kubectl("pause", "cats")
    assert not_now.code == 1 and "allowed now: retry" in not_now.err
    invalid = await kubectl("promote", "bad")
    assert invalid.code == 1 and "spec of modelcanary bad is invalid" in invalid.err
    missing = await kubectl("status", "ghost")
    assert (
        missing.code == 1 and "modelcanary 'ghost' not found in namespace 'default'" in missing.err
    )
    usage = await kubectl("rollback", "digits")
    assert usage.code == 2 and "--reason" in usage.err
    assert (await kubectl("explode")).code == 2


def test_kubectl_lists_the_plugin(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "kubectl-canary").exists(), "pip install -e . creates kubectl-canary"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
           "KUBECONFIG": str(tmp_path / "none")}  # fmt: skip
    listed = subprocess.run([str(bin_dir / "kubectl"), "plugin", "list"], capture_output=True,
                            text=True, env=env, check=False)  # fmt: skip
    assert str(bin_dir / "kubectl-canary") in listed.stdout, listed.stdout + listed.stderr
    helped = subprocess.run([str(bin_dir / "kubectl"), "canary", "--help"], capture_output=True,
                            text=True, env=env, check=False)  # fmt: skip
    assert helped.returncode == 0 and "promote" in helped.stdout


PHASES: dict[str, RolloutState | None] = {
    "Pending": None,
    "Progressing": PROGRESSING,
    "Paused": RolloutState(phase="Paused", step=0, weight=10, started_at=T0),
    "Promoted": RolloutState(phase="Promoted", step=2, weight=100, started_at=T0),
    "RolledBack": ROLLED_BACK,
}
ALLOWED = {  # verb -> phases where it may be asked for
    ("promote",): {"Pending", "Progressing", "Paused"},
    ("promote", "--full"): {"Pending", "Progressing", "Paused"},
    ("rollback", "--reason", "r"): {"Pending", "Progressing", "Paused"},
    ("pause",): {"Pending", "Progressing"},
    ("resume",): {"Paused"},
    ("retry",): {"RolledBack"},
}


@pytest.mark.asyncio
async def test_every_verb_in_every_phase(kubectl: Any, kmock: kmock.KubernetesEmulator) -> None:
    for phase, state in PHASES.items():
        name = f"in-{phase.lower()}"
        body = resource(name, "default", state)
        async with aiohttp.ClientSession(base_url=str(kmock.url)) as session:
            await session.post(MC.format(ns="default"), json=body)
        for verb, allowed in ALLOWED.items():
            run = await kubectl(verb[0], name, *verb[1:])
            expected = 0 if phase in allowed else 1
            assert run.code == expected, (phase, verb, run.err)
            if expected:
                assert f"the rollout is {phase}" in run.err and "needs" in run.err


@pytest.mark.asyncio
async def test_status_watch_redraws_only_on_change(
    kubectl: Any, kmock: kmock.KubernetesEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-w` polls; a change to the status prints the view again, no change prints nothing."""
    from modelcanary.kubectl import plugin as kubectl_canary

    polls = {"n": 0}

    def tick(seconds: float) -> None:
        polls["n"] += 1
        if polls["n"] == 2:  # the operator moves the canary on between polls 2 and 3
            body = {"status": status_fields(replace(PROGRESSING, step=2, weight=100))}
            path = f"{MC.format(ns='default')}/digits/status"
            asyncio.run_coroutine_threadsafe(_patch(str(kmock.url), path, body), loop).result()
        if polls["n"] == 4:
            raise KeyboardInterrupt

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(kubectl_canary, "pause", tick)
    watched = await kubectl("status", "digits", "-w")
    assert watched.code == 130
    assert watched.out.count("rollout digits:") == 2  # drawn, then redrawn once after the change
    assert "step      3/3 (100%)" in watched.out


async def _patch(base: str, path: str, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession(base_url=base) as session:
        headers = {"content-type": "application/merge-patch+json"}
        async with session.patch(path, json=body, headers=headers) as response:
            assert response.status < 300
