"""The live dashboard without a stack: its view of a rollout, its charts, and its API on
a real run directory's files (the intents it records are the command line's)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelcanary.cli import main
from modelcanary.dashboard.app import create_app
from modelcanary.dashboard.serving import listen_address
from modelcanary.dashboard.svg import line_chart
from modelcanary.dashboard.view import weight_series
from modelcanary.local.controller import LocalRollout
from modelcanary.local.dashboard import LocalBackend
from modelcanary.rollout.spec import parse_spec
from modelcanary.rollout.state import RolloutState, Transition

SPEC = parse_spec(
    {
        "model": "digits",
        "stable": {"version": "1"},
        "canary": {"version": "2"},
        "steps": [20, 50, 100],
        "interval": "10s",
    },
    "test",
)
STARTED = Transition(100.0, "start", "Progressing", 0, 20, "step 1")
PROGRESSING = RolloutState(
    phase="Progressing",
    step=0,
    weight=20,
    started_at=100.0,
    step_started_at=100.0,
    history=(STARTED,),
)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rollout = LocalRollout.of(tmp_path, "digits")
    rollout.begin(SPEC)
    rollout.store.save(PROGRESSING)
    (tmp_path / "gateway.token").write_text("stack-token\n")
    return tmp_path


def client(run_dir: Path, token: str | None = "stack-token") -> TestClient:
    return TestClient(create_app(LocalBackend(run_dir), token), base_url="http://127.0.0.1")


def post(c: TestClient, body: object, token: str = "stack-token") -> tuple[int, str]:
    reply = c.post("/api/intents", json=body, headers={"Authorization": f"Bearer {token}"})
    data = reply.json()
    return reply.status_code, data.get("message") or data["error"]


def test_the_weight_is_drawn_as_steps_from_the_history() -> None:
    advanced = Transition(110.0, "advance", "Progressing", 1, 50, "step 2")
    state = RolloutState(phase="Progressing", step=1, weight=50, history=(STARTED, advanced))
    series = weight_series(SPEC, state, 120.0)
    assert series["canary v2"] == [(100.0, 20.0), (110.0, 20.0), (110.0, 50.0), (120.0, 50.0)]
    assert series["stable v1"] == [(100.0, 80.0), (110.0, 80.0), (110.0, 50.0), (120.0, 50.0)]


def test_no_data_is_a_gap_in_the_line_never_a_zero() -> None:
    points = [(0.0, 0.1), (1.0, math.nan), (2.0, 0.3), (30.0, 0.2)]
    svg = line_chart("Error ratio", "%", {"canary v2": points}, 0.0, 30.0, scale=100)
    assert svg.count("<polyline") == 3  # split by the NaN and by the 28 s without data
    assert line_chart("x", "", {"a": points}, 0.0, 30.0, gap_s=math.inf).count("<polyline") == 2


def test_the_page_document_shows_the_rollout_and_why_there_are_no_traffic_charts(
    run_dir: Path,
) -> None:
    document = client(run_dir).get("/api/rollouts").json()
    (card,) = document["rollouts"]
    assert (card["key"], card["phase"], card["weight"], card["step"]) == (
        "digits",
        "Progressing",
        20,
        1,
    )
    assert "no traffic charts: no local stack in" in card["problem"]
    assert card["html"].count("<svg") == 1  # the weight, from the history alone
    allowed = {a["action"]: a["allowed"] for a in card["actions"]}
    assert allowed == {"promote": True, "pause": True, "resume": False, "rollback": True}
    assert document["actions"] is True


def test_an_intent_is_recorded_as_the_command_line_records_it(run_dir: Path) -> None:
    code, message = post(client(run_dir), {"key": "digits", "action": "pause", "reason": "look"})
    assert code == 200 and message.startswith("digits: pause recorded (intent ")
    intent = json.loads((run_dir / "rollouts" / "digits" / "intent.json").read_text())
    assert intent["action"] == "pause" and intent["reason"] == "look"
    assert intent["by"].endswith("(dashboard)") and intent["id"]


# a table: one case per line, read across
# fmt: off
WRONG_INTENTS = [
    ({"key": "digits", "action": "pause"}, "wrong", 401, "missing or wrong token"),
    ({"key": "digits", "action": "resume"}, "stack-token", 409,
     "cannot resume: the rollout is Progressing"),
    ({"key": "digits", "action": "rollback", "reason": " "}, "stack-token", 400,
     "rollback needs a reason"),
    ({"key": "other", "action": "pause"}, "stack-token", 404, "no rollout 'other'"),
    ({"key": "digits", "action": "retry"}, "stack-token", 400,
     "action: one of promote, pause, resume, rollback"),
    (["digits"], "stack-token", 400, "the body must be a JSON object"),
    ({"key": "digits", "action": "pause", "reason": "x" * 501}, "stack-token", 400,
     "reason: a string of at most 500 characters"),
]
# fmt: on


@pytest.mark.parametrize(("body", "token", "status", "message"), WRONG_INTENTS)
def test_a_wrong_intent_is_refused_and_nothing_is_recorded(
    run_dir: Path, body: object, token: str, status: int, message: str
) -> None:
    code, said = post(client(run_dir), body, token)
    assert code == status and message in said
    assert not (run_dir / "rollouts" / "digits" / "intent.json").exists()


def test_a_body_over_the_limit_is_refused(run_dir: Path) -> None:
    reply = client(run_dir).post(
        "/api/intents",
        content=b"{" + b" " * 5000 + b"}",
        headers={"Authorization": "Bearer stack-token", "Content-Type": "application/json"},
    )
    assert reply.status_code == 413 and "over 4096 bytes" in reply.json()["error"]


def test_read_only_refuses_every_intent_and_other_hosts_get_nothing(run_dir: Path) -> None:
    read_only = client(run_dir, token=None)
    code, said = post(read_only, {"key": "digits", "action": "pause"})
    assert code == 403 and "--allow-actions" in said
    assert read_only.get("/api/rollouts").json()["actions"] is False
    rebound = TestClient(
        create_app(LocalBackend(run_dir), "stack-token"), base_url="http://evil.example"
    )
    assert rebound.get("/api/rollouts").status_code == 400
    assert not (run_dir / "rollouts" / "digits" / "intent.json").exists()


def test_the_listen_address_is_loopback_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert listen_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert listen_address("[::1]:3100") == ("::1", 3100)
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", "--run-dir", str(tmp_path), "--listen", "0.0.0.0:3100"])
    assert exited.value.code == 2
    assert "loopback address only" in capsys.readouterr().err
    assert main(["dashboard", "--run-dir", str(tmp_path), "--allow-actions"]) == 2
    assert "--allow-actions needs the stack's token" in capsys.readouterr().err
