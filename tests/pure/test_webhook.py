"""The controller's webhook receiver, the notifier's alerts and the local on-call receiver."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelcanary.adapters.alertmanager_notifier import alert_for
from modelcanary.alerts import oncall
from modelcanary.alerts.alertmanager import ALERTS_PATH, WEBHOOK_PATH
from modelcanary.alerts.webhook import AlertBook, WebhookAlert, create_app
from modelcanary.rollout.ports import RolloutEvent

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "controller",
        "groupKey": "{}:{}",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
    }


def alert(fingerprint: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "ModelVersionHighErrorRatio", "severity": "critical", **labels},
        "annotations": {"description": "digits version 2 failed 30% of its requests"},
        "startsAt": "2026-11-22T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


@pytest.fixture
def heard() -> list[WebhookAlert]:
    return []


@pytest.fixture
def book(heard: list[WebhookAlert]) -> AlertBook:
    return AlertBook(listener=heard.append)


@pytest.fixture
def client(book: AlertBook) -> TestClient:
    return TestClient(create_app(book, TOKEN))


def test_firing_alerts_are_recorded_and_heard_once(
    client: TestClient, book: AlertBook, heard: list[WebhookAlert]
) -> None:
    first = alert("a1", model="digits", version="2")
    response = client.post(WEBHOOK_PATH, json=payload(first), headers=AUTH)
    assert response.status_code == 200 and response.json() == {"received": 1, "newly_firing": 1}
    client.post(WEBHOOK_PATH, json=payload(first), headers=AUTH)  # repeated notification
    assert [a.fingerprint for a in heard] == ["a1"]
    assert [a.labels["version"] for a in book.firing(model="digits")] == ["2"]
    assert book.firing(model="digits", version="1") == []
    client.post(
        WEBHOOK_PATH,
        json=payload(alert("a1", "resolved", model="digits", version="2"), status="resolved"),
        headers=AUTH,
    )
    assert book.firing() == []


# a table: one case per line, read across
# fmt: off
BAD_POSTS = [
    ({}, payload(alert("x")), 401, "Bearer"),
    ({"Authorization": "Bearer wrong"}, payload(alert("x")), 401, "Bearer"),
    ({"Authorization": f"Basic {TOKEN}"}, payload(alert("x")), 401, "Bearer"),
    (AUTH, {"version": "4"}, 400, "not an Alertmanager webhook payload"),
    (AUTH, {**payload(alert("x")), "version": "3"}, 400, "version"),
    (AUTH, payload({**alert("x"), "status": "exploding"}), 400, "alerts.0.status"),
    (AUTH, payload({**alert("x"), "fingerprint": ""}), 400, "fingerprint"),
]
BAD_POSTS_IDS = ["no-token", "wrong-token", "wrong-scheme", "missing-fields", "old-version", "bad-status", "no-fingerprint"]
# fmt: on


@pytest.mark.parametrize(("headers", "body", "status", "message"), BAD_POSTS, ids=BAD_POSTS_IDS)
def test_bad_posts_change_nothing(
    client: TestClient,
    book: AlertBook,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    response = client.post(WEBHOOK_PATH, json=body, headers=headers)
    assert response.status_code == status and message in response.json()["error"]
    assert book.firing() == [] and book.posts == 0


def test_non_json_is_a_400(client: TestClient, book: AlertBook) -> None:
    response = client.post(WEBHOOK_PATH, content=b"{not json", headers=AUTH)
    assert response.status_code == 400 and book.posts == 0


@pytest.mark.parametrize(
    ("query", "named"),
    [("after=two", "after: a whole number, not 'two'"), ("wait=nan", "wait: a finite number")],
)
def test_a_bad_follow_parameter_is_a_400_naming_it(
    client: TestClient, query: str, named: str
) -> None:
    response = client.get(f"{ALERTS_PATH}?{query}", headers=AUTH)
    assert response.status_code == 400 and named in response.json()["error"]
    assert "\n" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nowhere", 404, "no route for GET /nowhere"),
        ("GET", WEBHOOK_PATH, 405, f"{WEBHOOK_PATH} does not take GET, only POST"),
    ],
)
def test_a_request_no_route_takes_gets_one_line_of_json(
    client: TestClient, method: str, path: str, status: int, message: str
) -> None:
    response = client.request(method, path, headers=AUTH)
    assert (response.status_code, response.json()) == (status, {"error": message})
    assert "\n" not in response.text


def test_an_alert_past_its_end_is_no_longer_firing(book: AlertBook, client: TestClient) -> None:
    """Issue 13 defect 5: the book cleared an alert only on a "resolved" post, so one whose
    resolution a stalled Alertmanager never sent fired for ever. It ends at its endsAt
    (Go's zero time, which Alertmanager sends for a firing alert, is no end)."""
    now = datetime.now(UTC)
    lapsed = {
        **alert("old", model="digits", version="3"),
        "startsAt": (now - timedelta(minutes=10)).isoformat(),
        "endsAt": (now - timedelta(minutes=1)).isoformat(),
    }
    lasting = {
        **alert("new", model="digits", version="3"),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }
    firing = alert("open", model="digits", version="3")  # endsAt 0001-01-01: no end
    response = client.post(WEBHOOK_PATH, json=payload(lapsed, lasting, firing), headers=AUTH)
    assert response.status_code == 200
    assert sorted(a.fingerprint for a in book.firing()) == ["new", "open"]
    followed = client.get(ALERTS_PATH, headers=AUTH).json()["alerts"]
    assert sorted(a["fingerprint"] for a in followed) == ["new", "open"]
    book.now = lambda: now + timedelta(minutes=6)  # the stall goes on: "new" lapses too
    assert [a.fingerprint for a in book.firing()] == ["open"]


def test_an_alert_that_starts_in_the_future_is_not_recorded(
    book: AlertBook, client: TestClient, heard: list[WebhookAlert]
) -> None:
    """Issue 25 probe 3b: an alert dated later than now rolled back every later rollout of
    its version (Prometheus dates an alert when its rule became active: never ahead)."""
    now = datetime.now(UTC)
    future = {
        **alert("later", model="digits", version="3"),
        "startsAt": (now + timedelta(days=30)).isoformat(),
    }
    skewed = {
        **alert("skewed", model="digits", version="3"),
        "startsAt": (now + timedelta(seconds=5)).isoformat(),
    }
    response = client.post(WEBHOOK_PATH, json=payload(future, skewed), headers=AUTH)
    assert response.status_code == 200 and response.json()["newly_firing"] == 1
    assert [a.fingerprint for a in book.firing()] == ["skewed"]
    assert [a.fingerprint for a in heard] == ["skewed"]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_a_413(
    client: TestClient, book: AlertBook, declared: bool
) -> None:
    """Issue 13 defect 8: the webhook read a body of any size (48 MB accepted, resident
    memory 100 -> 309 MB and not released)."""
    from modelcanary.alerts.webhook import MAX_BODY_BYTES

    padding = "x" * MAX_BODY_BYTES
    big = {**alert("big", model="digits", version="2"), "annotations": {"description": padding}}
    body = json.dumps(payload(big)).encode()
    content = body if declared else iter([body[: len(body) // 2], body[len(body) // 2 :]])
    response = client.post(WEBHOOK_PATH, content=content, headers=AUTH)
    assert response.status_code == 413
    assert f"limit of {MAX_BODY_BYTES} bytes" in response.json()["error"]
    assert book.firing() == [] and book.posts == 0


def test_the_oncall_receiver_escapes_control_characters(tmp_path: Path) -> None:
    """Issue 13 defect 8: the on-call receiver printed a payload's escape codes raw."""
    out = io.StringIO()
    client = TestClient(oncall.create_app(tmp_path / "oncall.jsonl", TOKEN, out), headers=AUTH)
    hostile = alert("e1", model="digits\x1b[2J", version="2")
    hostile["annotations"] = {"description": "red \x1b[31mALERT\x1b[0m\nsecond line\r\x07"}
    assert client.post("/oncall", json=payload(hostile)).status_code == 200
    printed = out.getvalue()
    assert "\x1b" not in printed and "\r" not in printed and "\x07" not in printed
    assert printed.count("\n") == 1
    assert "digits\\x1b[2J:2" in printed
    assert "red \\x1b[31mALERT\\x1b[0m\\nsecond line\\r\\x07" in printed


def test_the_oncall_receiver_bounds_bodies(tmp_path: Path) -> None:
    from modelcanary.alerts.webhook import MAX_BODY_BYTES

    log = tmp_path / "oncall.jsonl"
    client = TestClient(oncall.create_app(log, TOKEN, io.StringIO()), headers=AUTH)
    big = client.post("/oncall", content=b"x" * (MAX_BODY_BYTES + 1))
    assert big.status_code == 413 and not log.exists()


def test_the_oncall_receiver_pages_only_for_alertmanager(tmp_path: Path) -> None:
    """Issue 25 probe 5: any POST was printed as a real page, and `{"alerts": [1]}` gave a
    500 and a traceback."""
    out, log = io.StringIO(), tmp_path / "oncall.jsonl"
    app = oncall.create_app(log, TOKEN, out)
    forged = payload(alert("x1", model="digits", version="2"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = TestClient(app).post("/oncall", json=forged, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    client = TestClient(app, headers=AUTH)
    malformed = client.post("/oncall", json={"alerts": [1]})
    assert malformed.status_code == 400
    error = malformed.json()["error"]
    assert error.startswith("not an Alertmanager webhook payload: ") and "\n" not in error
    assert error.endswith("alerts.0: Input should be an object")
    assert out.getvalue() == "" and not log.exists()


def test_rollback_events_page_with_the_numbers() -> None:
    event = RolloutEvent(
        kind="rolled_back",
        rollout="digits",
        model="digits",
        stable="1",
        canary="2",
        reason="error ratio 0.31 above 0.05",
        numbers={"error_ratio": 0.31, "requests": 412},
        at=datetime(2026, 11, 22, 3, 0, tzinfo=UTC),
    )
    body = alert_for(event)
    assert body["labels"] == {
        "alertname": "ModelCanaryRolledBack",
        "severity": "critical",
        "origin": "modelcanary-controller",
        "rollout": "digits",
        "model": "digits",
        "version": "2",
        "event_id": "20261122T030000.000000Z",
    }
    assert body["annotations"]["description"] == (
        "Rollout digits rolled back canary version 2 (stable was 1): error ratio 0.31 above 0.05 "
        "[error_ratio=0.31, requests=412]"
    )
    assert body["annotations"]["number_requests"] == "412"
    assert (
        body["startsAt"] == "2026-11-22T03:00:00+00:00"
        and body["endsAt"] == "2026-11-22T03:05:00+00:00"
    )
    assert (
        alert_for(RolloutEvent("promoted", "d", "d", "1", "2", "all checks passed"))["labels"][
            "severity"
        ]
        == "info"
    )


def test_every_rollback_is_an_alert_of_its_own() -> None:
    """Issue 13 defect 3: two rollbacks of one version carried the same labels, so
    Alertmanager took the second for the first and never paged again."""
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    first = RolloutEvent("rolled_back", "digits", "digits", "2", "3", "error ratio", at=at)
    later = at + timedelta(seconds=40)
    second = RolloutEvent("rolled_back", "digits", "digits", "2", "3", "latency", at=later)
    assert alert_for(first)["labels"] != alert_for(second)["labels"]
    assert alert_for(first)["labels"] == alert_for(first)["labels"]  # a retried post is one alert


def test_each_controller_notice_is_a_group_of_its_own() -> None:
    """Grouped by event too, a second rollback is a new notification (a new PagerDuty
    incident), not an update of the first's; Prometheus' alerts group as before."""
    from modelcanary.alerts.alertmanager import config, parse_routing

    hook = {"type": "webhook", "url": "http://127.0.0.1:1/x"}
    routing = parse_routing({"controller": hook, "oncall": hook, "chat": hook}, "t")
    assert config(routing)["route"]["group_by"] == ["alertname", "model", "version", "event_id"]


def test_oncall_prints_readably_and_appends_json_lines(tmp_path: Path) -> None:
    out = io.StringIO()
    log = tmp_path / "oncall.jsonl"
    client = TestClient(oncall.create_app(log, TOKEN, out), headers=AUTH)
    assert (
        client.post(
            "/oncall", json=payload(alert("a1", model="digits", version="2", source="gateway"))
        ).status_code
        == 200
    )
    assert out.getvalue() == (
        "[oncall] FIRING critical ModelVersionHighErrorRatio digits:2 (gateway): "
        "digits version 2 failed 30% of its requests\n"
    )
    record = json.loads(log.read_text())
    assert record["channel"] == "oncall" and record["labels"]["version"] == "2"
    assert client.post("/oncall", content=b"nope").status_code == 400


def test_oncall_prints_each_change_once(tmp_path: Path) -> None:
    out = io.StringIO()
    log = tmp_path / "oncall.jsonl"
    client = TestClient(oncall.create_app(log, TOKEN, out), headers=AUTH)
    firing = alert("f1", model="digits", version="2")
    for _ in range(3):  # Alertmanager repeats the group's alerts in later notifications
        client.post("/oncall", json=payload(firing))
    client.post(
        "/oncall",
        json=payload(alert("f1", "resolved", model="digits", version="2"), status="resolved"),
    )
    client.post(
        "/oncall",
        json=payload(alert("f1", "resolved", model="digits", version="2"), status="resolved"),
    )
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["FIRING", "RESOLVED"]
    assert len(log.read_text().splitlines()) == 5  # the log keeps every notified alert


def test_a_missing_binary_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcanary.errors import UsageError
    from modelcanary.process import find_binary

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError) as error:
        find_binary(("alertmanager", "prometheus-alertmanager"), "prometheus-alertmanager")
    assert str(error.value) == (
        "alertmanager or prometheus-alertmanager not found; install it with "
        "`apt-get install -y prometheus-alertmanager` (`make setup` does, when run as root)"
    )


def test_a_controller_in_another_process_is_woken_by_the_alert_feed() -> None:
    """The long poll answers as soon as Alertmanager posts, not at the end of its wait."""
    import threading

    import httpx

    from modelcanary.adapters.alert_feed import AlertFeed
    from modelcanary.asgi_server import AppServer
    from modelcanary.rollout.ports import FiringAlert

    book = AlertBook()
    server = AppServer(create_app(book, TOKEN), name="webhook")
    server.start()
    wake = threading.Event()
    feed = AlertFeed(server.url, TOKEN, wake)
    try:
        feed.start()
        assert feed.firing("digits") == () and feed.problem is None
        wake.clear()
        critical = alert("a1", model="digits", version="2")
        own = alert("a2", model="digits", version="2", origin="modelcanary-controller")
        httpx.post(server.url + WEBHOOK_PATH, json=payload(critical, own), headers=AUTH)
        assert wake.wait(10)  # well before the 25 s poll would end on its own
        began = datetime(2026, 11, 22, 3, 0, tzinfo=UTC).timestamp()  # startsAt, passed on
        firing = ("ModelVersionHighErrorRatio", "critical", "2", "firing", began)
        assert feed.firing("digits") == (FiringAlert(*firing),)
        assert feed.firing("cats") == ()
        assert httpx.get(server.url + "/alertmanager/alerts").status_code == 401
    finally:
        feed.stop()
        server.stop()
    wrong = AlertFeed(server.url, "wrong", threading.Event())
    assert wrong.refresh(0) is False and wrong.problem is not None
