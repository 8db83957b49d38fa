"""`kubectl canary` against the real API server with the chart's CRD, through a kubeconfig
with two contexts (two people, two namespaces)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from modelcanary.adapters.status_store import INTENT_ANNOTATION, mark_invalid, status_fields
from modelcanary.kube.api import model_canary
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.kubectl.plugin import list_rows, main
from modelcanary.rollout.judge import Check
from modelcanary.rollout.state import LastAnalysis, RolloutState, Transition
from tests.support.apiserver import ApiServer

T0 = 1_795_000_000.0


@dataclass
class Run:
    code: int
    out: str
    err: str


def resource(name: str, ns: str, state: RolloutState | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelCanary",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-11-18T11:06:40Z"},
        "spec": {
            "model": name,
            "stable": {"version": "1"},
            "canary": {"version": "2"},
            "steps": [10, 50, 100],
            "interval": "30s",
            **spec,
        },
    }
    if state is not None:
        body["status"] = status_fields(state)
    return body


PROGRESSING = RolloutState(
    phase="Progressing",
    step=1,
    weight=50,
    started_at=T0 - 60,
    step_started_at=T0 - 12,
    history=(
        Transition(T0 - 60, "start", "Progressing", 0, 10, "golden samples match"),
        Transition(T0 - 12, "advance", "Progressing", 1, 50, "checks passed; step 2"),
    ),
    analysis=LastAnalysis(
        T0 - 1,
        "pass",
        (Check("error_ratio", 0.002, 0.01, 140, "pass"),),
        (),
        "step 2 healthy; 18s left",
    ),
)
ROLLED_BACK = RolloutState(
    phase="RolledBack",
    step=0,
    weight=0,
    started_at=T0 - 60,
    history=(Transition(T0 - 5, "rollback", "RolledBack", 0, 0, "alert X fired", by="controller"),),
)


def write_kubeconfig(path: Path, server: ApiServer, dev: str, prod: str) -> Path:
    """Two contexts on the server, as two people's: dev (user ana, namespace DEV, the current
    one) and prod (user bo, namespace PROD); both hold the admin's token."""
    cluster = {"server": server.url, "certificate-authority": str(server.ca_file)}
    contexts = [
        {"name": "dev", "context": {"cluster": "envtest", "user": "ana", "namespace": dev}},
        {"name": "prod", "context": {"cluster": "envtest", "user": "bo", "namespace": prod}},
    ]
    users = [{"name": user, "user": {"token": server.admin_token}} for user in ("ana", "bo")]
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "dev"}
    clusters = [{"name": "envtest", "cluster": cluster}]
    config |= {"clusters": clusters, "users": users, "contexts": contexts}
    path.write_text(yaml.safe_dump(config))
    return path


class Kubectl:
    """`kubectl canary` in-process against the real server, and the objects it acts on."""

    def __init__(
        self, server: ApiServer, config_file: Path, dev: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.config_file, self.dev, self.capsys = config_file, dev, capsys
        self.admin = config.new_client_from_config(config_file=str(server.kubeconfig))
        self.api = client.CustomObjectsApi(self.admin)

    def __call__(self, *args: str) -> Run:
        self.capsys.readouterr()
        try:
            code = main(["--kubeconfig", str(self.config_file), *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def create(self, body: dict[str, Any]) -> None:
        """Create the object, then write its status through the status subresource (the
        API server ignores `status` on create), as the operator does."""
        meta = body["metadata"]
        manifest = {key: value for key, value in body.items() if key != "status"}
        self.api.create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, manifest
        )
        if "status" in body:
            self.write_status(meta["namespace"], meta["name"], body["status"])

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        model_canary(self.api, namespace, name).patch({"status": status}, status=True)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return model_canary(self.api, namespace, name).get()


@pytest.fixture
def kubectl(
    apiserver: ApiServer,
    modelcanary_crd: str,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Kubectl]:
    """Contexts dev (this test's namespace) and prod (another fresh one), with four
    rollouts: digits (Progressing), cats (RolledBack) and bad (Invalid) in dev, owls
    (Pending) in prod."""
    prod = f"{namespace}-prod"
    apiserver.kubectl("create", "namespace", prod)
    config_file = write_kubeconfig(tmp_path / "kubeconfig", apiserver, namespace, prod)
    run = Kubectl(apiserver, config_file, namespace, capsys)
    run.create(resource("digits", namespace, PROGRESSING))
    run.create(resource("cats", namespace, ROLLED_BACK))
    run.create(resource("owls", prod, None))
    # The API server refuses a spec the engine would refuse; an Invalid rollout is one the
    # operator marked so (e.g. a spec stored under an older CRD).
    run.create(resource("bad", namespace, None))
    bad = model_canary(run.api, namespace, "bad")
    mark_invalid(bad, "steps: steps must increase, got [50, 20]", bad.get())
    with run.admin:
        yield run


def test_list_table_snapshot() -> None:
    items = [resource("digits", "default", PROGRESSING), resource("cats", "prod", ROLLED_BACK)]
    rows = list_rows(items, all_namespaces=True, now=T0 + 3 * 3600)
    assert "\n".join("  ".join(r) for r in rows) == "\n".join(
        [
            "NAMESPACE  NAME  PHASE  MODEL  STABLE  CANARY  WEIGHT  STEP  AGE",
            "default  digits  Progressing  digits  1  2  50%  2/3  3h",
            "prod  cats  RolledBack  cats  1  2  0%  1/3  3h",
        ]
    )


def test_list_in_a_namespace_and_everywhere(kubectl: Kubectl) -> None:
    here = kubectl("list")
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
    assert lines[3].split()[1:7] == ["Progressing", "digits", "1", "2", "50%", "2/3"]
    everywhere = kubectl("list", "-A")
    assert "owls" in everywhere.out and everywhere.out.splitlines()[0].startswith("NAMESPACE")
    prod = kubectl("list", "--context", "prod", "-o", "json")
    assert [i["metadata"]["name"] for i in json.loads(prod.out)] == ["owls"]


def test_status_shows_checks_time_left_and_history(kubectl: Kubectl) -> None:
    shown = kubectl("status", "digits")
    assert shown.code == 0, shown.err
    for line in (
        "phase     Progressing",
        "step      2/3 (50%)",
        "error_ratio",
        "history:",
        "checks passed; step 2",
    ):
        assert line in shown.out
    as_json = json.loads(kubectl("status", "digits", "-o", "json").out)
    assert as_json["weight"] == 50 and as_json["checks"][0]["samples"] == 140
    as_yaml = yaml.safe_load(kubectl("status", "digits", "-o", "yaml").out)
    assert as_yaml["phase"] == "Progressing"
    history = kubectl("history", "digits")
    assert "golden samples match" in history.out and "advance" in history.out
    invalid = kubectl("status", "bad")
    assert invalid.code == 0 and "rollout bad: Invalid" in invalid.out
    assert "steps must increase" in invalid.out


def test_verbs_record_intents_only_where_allowed(kubectl: Kubectl) -> None:
    promoted = kubectl("promote", "digits", "--full", "--reason", "numbers look great")
    assert promoted.code == 0 and "promote --full requested by ana" in promoted.out
    body = kubectl.get(kubectl.dev, "digits")
    intent = json.loads(body["metadata"]["annotations"][INTENT_ANNOTATION])
    assert intent["action"] == "promote_full" and intent["by"] == "ana" and intent["id"]
    assert intent["reason"] == "numbers look great"
    assert "canaryTrafficPercent" not in json.dumps(body)  # the plugin never touches traffic
    assert body["status"]["phase"] == "Progressing"  # nor the status

    refused = kubectl("resume", "digits")
    assert refused.code == 1
    assert "cannot resume: the rollout is Progressing; resume needs Paused" in refused.err
    assert "allowed now: promote, promote --full, rollback, pause" in refused.err
    assert kubectl("retry", "cats").code == 0
    not_now = kubectl("pause", "cats")
    assert not_now.code == 1 and "allowed now: retry" in not_now.err
    invalid = kubectl("promote", "bad")
    assert invalid.code == 1 and "spec of modelcanary bad is invalid" in invalid.err
    missing = kubectl("status", "ghost")
    assert missing.code == 1
    assert f"modelcanary 'ghost' not found in namespace '{kubectl.dev}'" in missing.err
    usage = kubectl("rollback", "digits")
    assert usage.code == 2 and "--reason" in usage.err
    assert kubectl("explode").code == 2
    by_bo = kubectl("pause", "owls", "--context", "prod")
    assert by_bo.code == 0 and "pause requested by bo" in by_bo.out


def test_kubectl_lists_the_plugin(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "kubectl-canary").exists(), "pip install -e . creates kubectl-canary"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(tmp_path / "none"),
    }
    listed = subprocess.run(
        [str(bin_dir / "kubectl"), "plugin", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert str(bin_dir / "kubectl-canary") in listed.stdout, listed.stdout + listed.stderr
    helped = subprocess.run(
        [str(bin_dir / "kubectl"), "canary", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
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


def test_every_verb_in_every_phase(kubectl: Kubectl) -> None:
    for phase, state in PHASES.items():
        name = f"in-{phase.lower()}"
        kubectl.create(resource(name, kubectl.dev, state))
        for verb, allowed in ALLOWED.items():
            run = kubectl(verb[0], name, *verb[1:])
            expected = 0 if phase in allowed else 1
            assert run.code == expected, (phase, verb, run.err)
            if expected:
                assert f"the rollout is {phase}" in run.err and "needs" in run.err


def test_status_watch_redraws_only_on_change(
    kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-w` polls; a change to the status prints the view again, no change prints nothing,
    however much time passes between polls (the view's "Ns ago" is not a change)."""
    from modelcanary.kubectl import plugin as kubectl_canary

    polls = {"n": 0}
    clock = {"now": time.time()}
    monkeypatch.setattr(
        kubectl_canary, "time", SimpleNamespace(time=lambda: clock["now"], strftime=time.strftime)
    )

    def tick(seconds: float) -> None:
        clock["now"] += 5.0  # a poll later, the rollout's checks are 5 s older
        polls["n"] += 1
        if polls["n"] == 2:  # the operator moves the canary on between polls 2 and 3
            status = status_fields(replace(PROGRESSING, step=2, weight=100))
            kubectl.write_status(kubectl.dev, "digits", status)
        if polls["n"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(kubectl_canary, "pause", tick)
    watched = kubectl("status", "digits", "-w")
    assert watched.code == 130
    assert watched.out.count("rollout digits:") == 2  # drawn, then redrawn once after the change
    assert "step      3/3 (100%)" in watched.out


def test_an_unreadable_state_is_one_line_everywhere(kubectl: Kubectl) -> None:
    """A status.state that is not a rollout state (written by hand, or by a release with
    another format) is named in one line by every verb; the others still list and show."""
    kubectl.create(resource("garbled", kubectl.dev, None))
    kubectl.write_status(kubectl.dev, "garbled", {"state": {"phase": "Exploding", "step": "x"}})
    shown = kubectl("status", "garbled")
    assert shown.code == 0, shown.err
    assert "rollout garbled: Unreadable" in shown.out and "status.state" in shown.out
    assert "Traceback" not in shown.out + shown.err
    as_json = json.loads(kubectl("status", "garbled", "-o", "json").out)
    assert as_json["phase"] == "Unreadable" and "status.state" in as_json["message"]
    history = kubectl("history", "garbled")
    assert history.code == 0 and "no history: status.state" in history.out
    refused = kubectl("rollback", "garbled", "--reason", "r")
    assert refused.code == 1 and len(refused.err.strip().splitlines()) == 1
    assert "cannot rollback: modelcanary garbled: status.state is unreadable: phase:" in refused.err
    listed = kubectl("list")
    assert listed.code == 0 and "garbled" in listed.out and "digits" in listed.out
