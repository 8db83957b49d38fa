"""Alertmanager routing under `amtool check-config` and `amtool config routes test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from modelcanary.alerts.alertmanager import TIMINGS, parse_routing, render
from modelcanary.errors import UsageError

AMTOOL = shutil.which("amtool")
if AMTOOL is None:  # fail, never skip: `make setup` installs it
    raise RuntimeError(
        "amtool is missing: run `make setup` as root (apt-get install prometheus-alertmanager)"
    )

CONTROLLER = {
    "type": "webhook",
    "url": "http://127.0.0.1:9000/alertmanager/webhook",
    "bearer_token_file": "/run/token",
}
# one receiver of each kind a line
# fmt: off
RECEIVERS = {
    "webhook": {"type": "webhook", "url": "http://127.0.0.1:9001/oncall"},
    "pagerduty": {"type": "pagerduty", "routing_key_file": "/run/pagerduty-key"},
    "slack": {"type": "slack", "api_url_file": "/run/slack-url", "channel": "#ml-oncall"},
    "email": {"type": "email", "to": "oncall@example.com", "from": "modelcanary@example.com", "smarthost": "smtp.example.com:587", "auth_username": "modelcanary", "auth_password_file": "/run/smtp"},
    "wechat": {"type": "wechat", "corp_id": "corp", "api_secret": "secret", "agent_id": "1000002", "to_party": "2"},
}
# fmt: on


def write(tmp_path: Path, oncall: str, chat: str, timing: str = "demo") -> Path:
    receivers = {"oncall": RECEIVERS[oncall], "chat": RECEIVERS[chat]}
    timings = TIMINGS[timing].model_dump()
    routing = parse_routing({"controller": CONTROLLER, **receivers, "timing": timings}, "test")
    path = tmp_path / "alertmanager.yml"
    path.write_text(render(routing))
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("integration", list(RECEIVERS))
@pytest.mark.parametrize("timing", list(TIMINGS))
def test_every_integration_passes_amtool(tmp_path: Path, integration: str, timing: str) -> None:
    path = write(tmp_path, integration, integration, timing)
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 receivers" in result.stdout and "1 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "model=digits", "version=2"], "controller,oncall"),
        (["severity=warning", "model=digits", "version=2"], "controller,chat"),
        (["severity=info", "model=digits", "version=2", "origin=modelcanary-controller"], "chat"),
        (["severity=critical", "model=digits", "origin=modelcanary-controller"], "oncall"),
        (["severity=critical", "alertname=NodeDown"], "oncall"),  # not a model alert
    ],
)
def test_routing(tmp_path: Path, labels: list[str], receivers: str) -> None:
    path = write(tmp_path, "slack", "webhook")
    result = amtool("config", "routes", "test", f"--config.file={path}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_invalid_receivers_are_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as error:
        parse_routing(
            {"controller": CONTROLLER, "oncall": {"type": "pager"}, "chat": RECEIVERS["webhook"]},
            "values.alertmanager",
        )
    assert "values.alertmanager: oncall:" in str(error.value) and "pager" in str(error.value)
    with pytest.raises(UsageError, match=r"chat\.slack\.channel: Field required"):
        parse_routing(
            {
                "controller": CONTROLLER,
                "oncall": RECEIVERS["webhook"],
                "chat": {"type": "slack", "api_url_file": "/x"},
            },
            "v",
        )
