"""`modelcanary dashboard` in a real headless Chromium during real local rollouts (issue
23): the real stack (Triton, gateway, Prometheus, Alertmanager), steady load, the
controller and the dashboard as separate processes, as a person runs them.

The tests share one stack and run in order: 1 -> 2 is paused and resumed from the page
and promoted, then 2 -> 3 is rolled back from the page with a reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from modelcanary.load.generator import BackgroundLoad
from modelcanary.local.controller import LocalRollout
from modelcanary.local.stack import LocalStack
from modelcanary.rollout.state import RolloutState
from modelcanary.serving.triton_home import TritonHome
from tests.support.browser import Browser
from tests.support.local_stack import digits_stack, steady_load
from tests.support.rollout_spec import rollout_spec
from tests.support.waits import until

pytestmark = pytest.mark.slow
MODELCANARY = str(Path(sys.executable).with_name("modelcanary"))
SCREENSHOT = os.environ.get("MODELCANARY_DASHBOARD_SCREENSHOT")  # where to save one, if set


@pytest.fixture(scope="module")
def stack(
    digits_repo: Path, triton_home: TritonHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with digits_stack(digits_repo, tmp_path_factory.mktemp("up"), 1, (1, 2, 3)) as local:
        yield local


@pytest.fixture(scope="module")
def load(stack: LocalStack, digits_repo: Path) -> Iterator[BackgroundLoad]:
    with steady_load(stack, digits_repo) as traffic:
        yield traffic


def started(args: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """A dashboard process and the lines it printed before serving."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(2)]
    assert lines[0].startswith("dashboard of "), lines
    return process, lines


@pytest.fixture(scope="module")
def dashboard(stack: LocalStack) -> Iterator[str]:
    """`modelcanary dashboard --allow-actions`: the URL it printed, with the token."""
    run_dir = stack.urls["run_dir"]
    listen = ["--listen", "127.0.0.1:0", "--allow-actions"]
    process, lines = started([MODELCANARY, "dashboard", "--run-dir", run_dir, *listen])
    try:
        yield lines[1].split("open ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as chromium:
        yield chromium


def start_rollout(
    stack: LocalStack, tmp_path: Path, stable: int, canary: int
) -> subprocess.Popen[str]:
    document = rollout_spec(
        stable,
        canary,
        interval="6s",
        analysis={
            "errorRatio": {"max": 0.05},
            "latencyP99": None,
            "noData": {"after": "30s", "action": "pause"},
            "beforeFull": {"maxWait": "5s"},
            "holdout": {"enabled": True},
        },
    )
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(document))
    quiet_in_run_dir = ["--run-dir", stack.urls["run_dir"], "--quiet"]
    return subprocess.Popen(
        [MODELCANARY, "rollout", "start", "-f", str(path), *quiet_in_run_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def state(stack: LocalStack) -> RolloutState:
    return LocalRollout.of(Path(stack.urls["run_dir"]), "digits").store.load() or RolloutState()


def shown(selector: str) -> str:
    """JavaScript: the text of the first element in the digits rollout matching SELECTOR."""
    return (
        f"((document.querySelector('section[data-key=\"digits\"] {selector}') || {{}})"
        ".textContent || '')"
    )


def click(browser: Browser, action: str) -> None:
    button = f'section[data-key="digits"] button[data-action="{action}"]'
    browser.wait_for(
        f"document.querySelector('{button}') && !document.querySelector('{button}').disabled", 30
    )
    browser.evaluate(f"document.querySelector('{button}').click()")


def test_the_page_follows_a_rollout_and_pauses_it(
    stack: LocalStack, load: BackgroundLoad, dashboard: str, browser: Browser, tmp_path: Path
) -> None:
    controller = start_rollout(stack, tmp_path, 1, 2)
    try:
        browser.open(dashboard)
        browser.evaluate("window.notReloaded = true")
        assert browser.wait_for(shown(".model"), 60).startswith("model digits: stable 1")
        assert browser.wait_for(f"{shown('.phase')} === 'Progressing'", 90)
        assert browser.wait_for(f"{shown('.weight')} === '20%'", 10)
        # the holdout gate with its interval, the checks, and the charts
        gate = browser.wait_for(shown(".gate"), 10)
        assert "holdout gate not worse" in gate and "difference [" in gate, state(stack).gate
        assert (
            browser.evaluate(
                "document.querySelectorAll('section[data-key=\"digits\"] svg.chart').length"
            )
            == 5
        )
        assert browser.wait_for(shown("table.checks"), 10)
        click(browser, "pause")
        until(lambda: state(stack).phase == "Paused", 30, "the click did not pause")
        assert browser.wait_for(f"{shown('.phase')} === 'Paused'", 5)
        assert "pause recorded" in browser.evaluate(shown(".message"))
        if SCREENSHOT:
            browser.wait_for(
                "document.querySelectorAll('section[data-key=\"digits\"] polyline').length > 6", 20
            )
            browser.screenshot(Path(SCREENSHOT))
        click(browser, "resume")
        # the weight changes on the page without a reload
        assert browser.wait_for(f"{shown('.weight')} === '50%'", 60)
        assert browser.wait_for(f"{shown('.phase')} === 'Promoted'", 90)
        promoted = state(stack).history[-1]
        assert promoted.action == "promote", state(stack).history
        newest = "document.querySelector('section[data-key=\"digits\"] table.history').rows[1]"
        assert browser.evaluate(f"{newest}.cells[1].textContent") == "promote"
        assert browser.evaluate(f"{newest}.cells[5].textContent") == promoted.reason
        assert browser.evaluate("window.notReloaded") is True
        assert controller.wait(30) == 0
    finally:
        controller.kill()
        controller.wait(10)
    assert [t.action for t in state(stack).history if t.by != "controller"] == ["pause", "resume"]


def test_the_page_rolls_back_with_a_reason(
    stack: LocalStack, load: BackgroundLoad, dashboard: str, browser: Browser, tmp_path: Path
) -> None:
    controller = start_rollout(stack, tmp_path, 2, 3)
    try:
        assert browser.wait_for(f"{shown('.model')}.includes('stable 2')", 30)
        assert browser.wait_for(f"{shown('.phase')} === 'Progressing'", 90)
        click(browser, "rollback")
        assert "rollback needs a reason" in browser.evaluate(shown(".message"))
        browser.evaluate(
            "document.querySelector('section[data-key=\"digits\"] input.reason').value = "
            "'seen enough on the dashboard'"
        )
        click(browser, "rollback")
        assert browser.wait_for(f"{shown('.phase')} === 'RolledBack'", 30)
        assert "seen enough on the dashboard" in browser.evaluate(shown("table.history"))
        assert controller.wait(30) == 1
    finally:
        controller.kill()
        controller.wait(10)
    assert state(stack).history[-1].reason.endswith("seen enough on the dashboard")


def test_a_read_only_dashboard_and_a_wrong_token_are_refused(
    stack: LocalStack, dashboard: str
) -> None:
    base = dashboard.split("#", 1)[0]
    intent = {"key": "digits", "action": "retry", "reason": ""}
    assert httpx.post(f"{base}api/intents", json=intent).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{base}api/intents", json=intent, headers=wrong).status_code == 401
    process, lines = started(
        [MODELCANARY, "dashboard", "--run-dir", stack.urls["run_dir"], "--listen", "127.0.0.1:0"]
    )
    try:
        url = lines[0].rsplit(": ", 1)[1].strip()
        token = Path(stack.urls["gateway_admin_token_file"]).read_text().strip()
        reply = httpx.post(
            f"{url}api/intents", json=intent, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 403 and "--allow-actions" in reply.json()["error"]
        assert httpx.get(f"{url}api/rollouts").json()["actions"] is False
    finally:
        process.terminate()
        process.wait(10)
    assert state(stack).phase == "RolledBack"  # nothing was recorded
