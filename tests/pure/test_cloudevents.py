"""KServe inference-logger CloudEvents: parsed from binary-mode headers, paired by id
within a byte budget and a time limit, and every half let go counted; the comparator
service's event endpoint never fails on a bad payload and offers only stable's pairs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from modelcanary.shadow.cloudevents import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    Event,
    InvalidEvent,
    Pairer,
    parse_event,
)
from modelcanary.shadow.pairs import VersionPair
from modelcanary.shadow.service import ComparatorService, ServiceSettings, answered_by
from tests.pure.test_shadow import sample_value


def headers(kind: str = REQUEST_TYPE, id: str = "r1", **extra: str) -> dict[str, str]:
    """The headers KServe's logger (cloudevents sdk-go, binary mode) sends."""
    return {
        "ce-specversion": "1.0",
        "ce-id": id,
        "ce-type": kind,
        "ce-source": "http://localhost:9081/",
        "ce-inferenceservicename": "digits",
        "ce-namespace": "models",
        "ce-component": "predictor",
        "ce-endpoint": "",
        "ce-metadata": "{}",
        "content-type": "application/json",
        **extra,
    }


def event(kind: str = "request", id: str = "r1", size: int = 10, source: str = "s") -> Event:
    return Event(id, kind, source, "digits", "predictor", b"x" * size, "application/json")  # type: ignore[arg-type]


def test_binary_mode_headers_become_an_event() -> None:
    got = parse_event(headers(RESPONSE_TYPE, "abc"), b"{}")
    assert (got.id, got.kind, got.service, got.component) == (
        "abc",
        "response",
        "digits",
        "predictor",
    )
    assert got.key == ("http://localhost:9081/", "abc")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ce-type": "dev.knative.ping"}, "is not an inference request or response"),
        ({"ce-id": ""}, "no ce-id header"),
        ({"ce-specversion": "0.3"}, "is not 1.0"),
        ({"content-type": "application/cloudevents+json"}, "structured-mode"),
    ],
)
def test_what_is_not_a_logger_event_is_refused(change: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event({**headers(), **change}, b"{}")


class Dropped(list[str]):
    def __call__(self, outcome: str) -> None:
        self.append(outcome)


def test_a_request_meets_its_response_in_either_order() -> None:
    dropped = Dropped()
    pairer = Pairer(1000, 10, dropped, clock=lambda: 0.0)
    assert pairer.add(event("request", "a")) is None
    assert pairer.add(event("response", "b")) is None
    pair = pairer.add(event("response", "a"))
    assert pair is not None and (pair.request.kind, pair.response.kind) == ("request", "response")
    pair = pairer.add(event("request", "b"))
    assert pair is not None and pair.request.id == "b" and pair.response.kind == "response"
    assert pairer.held == 0 and not pairer.waiting and dropped == []


def test_the_same_id_from_another_source_is_another_request() -> None:
    pairer = Pairer(1000, 10, Dropped(), clock=lambda: 0.0)
    pairer.add(event("request", "a", source="pod-1"))
    assert pairer.add(event("response", "a", source="pod-2")) is None
    assert len(pairer.waiting) == 2


def test_halves_whose_pair_does_not_come_expire() -> None:
    now = [0.0]
    dropped = Dropped()
    pairer = Pairer(1000, 5, dropped, clock=lambda: now[0])
    pairer.add(event("request", "failed"))  # answered 500: KServe logs no response
    now[0] = 3.0
    pairer.add(event("request", "b"))
    now[0] = 6.0
    assert pairer.add(event("response", "failed")) is None  # too late: waits alone
    assert dropped == ["expired"] and set(pairer.waiting) == {("s", "b"), ("s", "failed")}


def test_the_byte_budget_evicts_the_oldest_and_refuses_what_cannot_fit() -> None:
    dropped = Dropped()
    pairer = Pairer(25, 60, dropped, clock=lambda: 0.0)
    for id in ("a", "b"):
        pairer.add(event("request", id, size=10))
    pairer.add(event("request", "c", size=10))
    assert dropped == ["evicted"] and [k[1] for k in pairer.waiting] == ["b", "c"]
    pairer.add(event("request", "huge", size=26))
    assert dropped == ["evicted", "evicted"] and pairer.held == 20


def test_a_second_half_of_the_same_kind_replaces_the_first() -> None:
    dropped = Dropped()
    pairer = Pairer(100, 60, dropped, clock=lambda: 0.0)
    pairer.add(event("request", "a", size=10))
    pairer.add(event("request", "a", size=20))
    assert dropped == ["duplicate"] and pairer.held == 20


def test_the_answering_model_and_version_come_from_the_response() -> None:
    body = json.dumps({"model_name": "digits", "model_version": "2", "outputs": []}).encode()
    assert answered_by(Event("a", "response", "s", "", "", body, "")) == ("digits", "2")
    for bad in (b"not json", b"[]", b'{"model_name": "digits"}'):
        with pytest.raises(InvalidEvent):
            answered_by(Event("a", "response", "s", "", "", bad, ""))


# -- the service's event endpoint, called as an ASGI app -------------------------------------


def post(app: ComparatorService, head: dict[str, str], body: bytes) -> int:
    """POST one event; the status answered."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in head.items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


def service(**limits: Any) -> ComparatorService:
    pair = VersionPair({"logits": "classification"}, 1e-3, 1e-2, None)
    app = ComparatorService(ServiceSettings(**limits), "token", lambda m, s, c: pair)
    app.comparator.configure("digits", "2", "4", 100, "http://127.0.0.1:9/infer", pair)
    return app


def response(version: str) -> bytes:
    return json.dumps({"model_name": "digits", "model_version": version, "outputs": []}).encode()


def test_bad_events_are_counted_and_answered_4xx() -> None:
    app = service(max_event_bytes=100)
    assert post(app, headers("other"), b"{}") == 400
    assert post(app, headers(), b"x" * 101) == 413
    assert post(app, {**headers(), "ce-component": "transformer"}, b"{}") == 202
    assert post(app, headers(RESPONSE_TYPE), b"garbage") == 202  # waits for its request
    assert post(app, headers(), b"garbage") == 202  # paired; names no version: invalid
    counts = {
        o: sample_value(app.registry, "modelcanary_comparator_events_total", outcome=o)
        for o in ("invalid", "too_large", "ignored", "waiting", "paired")
    }
    assert counts == {"invalid": 2, "too_large": 1, "ignored": 1, "waiting": 1, "paired": 1}
    assert app.comparator.queue.qsize() == 0


def test_only_pairs_stable_answered_are_offered() -> None:
    app = service()
    for id, version in (("a", "2"), ("b", "4")):
        post(app, headers(REQUEST_TYPE, id), b'{"inputs": []}')
        post(app, headers(RESPONSE_TYPE, id), response(version))
    assert app.comparator.queue.qsize() == 1
    assert app.comparator.queue.get_nowait().body == b'{"inputs": []}'
