"""`kubectl canary dashboard` on the real API server, in a real headless Chromium (issue
23): the page shows the namespace's rollouts as the kubeconfig's user reads them, follows
a change of status without a reload, and its buttons record the same intent annotation as
`kubectl canary pause`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from modelcanary.adapters.status_store import INTENT_ANNOTATION, status_fields
from modelcanary.rollout.state import Transition
from tests.kube.test_kubectl_canary import PROGRESSING, T0, Kubectl, kubectl  # noqa: F401
from tests.support.browser import Browser

PLUGIN = str(Path(sys.executable).with_name("kubectl-canary"))


@pytest.fixture
def dashboard(kubectl: Kubectl) -> Iterator[str]:  # noqa: F811
    """`kubectl canary dashboard --allow-actions` in the dev context: its URL with the token."""
    options = ["--listen", "127.0.0.1:0", "--allow-actions"]
    process = subprocess.Popen(
        [PLUGIN, "--kubeconfig", str(kubectl.config_file), "dashboard", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(2)]
    try:
        assert lines[0].startswith(f"dashboard of namespace {kubectl.dev} as ana"), lines
        yield lines[1].split("open ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(10)


def text(key: str, selector: str) -> str:
    return f"((document.querySelector('section[data-key=\"{key}\"] {selector}') || {{}}).textContent || '')"


def test_the_page_shows_the_namespace_and_records_intents_on_the_resource(
    kubectl: Kubectl,  # noqa: F811
    dashboard: str,
) -> None:
    digits, bad = f"{kubectl.dev}/digits", f"{kubectl.dev}/bad"
    with Browser() as browser:
        browser.open(dashboard)
        browser.evaluate("window.notReloaded = true")
        assert browser.wait_for(f"{text(digits, '.phase')} === 'Progressing'", 30)
        assert browser.evaluate(text(digits, ".weight")) == "50%"
        assert browser.evaluate(text(digits, ".model")) == "model digits: stable 1 → canary 2"
        assert "error_ratio" in browser.evaluate(text(digits, "table.checks"))
        assert browser.evaluate(text(f"{kubectl.dev}/cats", ".phase")) == "RolledBack"
        assert "steps must increase" in browser.evaluate(text(bad, ".problem"))
        assert (
            browser.evaluate(  # another namespace's rollout is not shown without -A
                "document.querySelectorAll('section.rollout').length"
            )
            == 3
        )
        assert "no Prometheus" in browser.evaluate("document.getElementById('source').textContent")
        button = f'section[data-key="{digits}"] button[data-action="pause"]'
        browser.evaluate(f"document.querySelector('{button}').click()")
        assert browser.wait_for(f"{text(digits, '.message')}.includes('pause requested')", 10)
        intent = json.loads(
            kubectl.get(kubectl.dev, "digits")["metadata"]["annotations"][INTENT_ANNOTATION]
        )
        assert intent["action"] == "pause" and intent["by"] == "ana (dashboard)"
        # the operator acts on it: the page follows the new status without a reload
        by = "ana (dashboard)"
        pause = Transition(T0, "pause", "Paused", 1, 50, f"pause requested by {by}", by=by)
        paused = replace(PROGRESSING, phase="Paused", history=(*PROGRESSING.history, pause))
        kubectl.write_status(kubectl.dev, "digits", status_fields(paused))
        assert browser.wait_for(f"{text(digits, '.phase')} === 'Paused'", 10)
        assert "pause requested by ana (dashboard)" in browser.evaluate(
            text(digits, "table.history")
        )
        resume = f'section[data-key="{digits}"] button[data-action="resume"]'
        assert browser.evaluate(f"document.querySelector('{resume}').disabled") is False
        assert browser.evaluate("window.notReloaded") is True
    # without the token printed in the URL nothing is recorded
    base = dashboard.split("#", 1)[0]
    refused = httpx.post(f"{base}api/intents", json={"key": digits, "action": "resume"})
    assert refused.status_code == 401
    annotations = kubectl.get(kubectl.dev, "digits")["metadata"]["annotations"]
    assert json.loads(annotations[INTENT_ANNOTATION])["action"] == "pause"
