"""KServe inference-logger CloudEvents, paired by id. Pure (the clock is given).

KServe's logger (the agent beside a predictor with `spec.predictor.logger`) posts two
CloudEvents per request in HTTP binary mode: `ce-type` `org.kubeflow.serving.inference.
request` with the request body, then, when the predictor answered 200,
`org.kubeflow.serving.inference.response` with its answer; both carry the same `ce-id`
(the request's own `Ce-Id` header, else a fresh UUID) and `ce-source`, and the extension
headers `ce-inferenceservicename`, `ce-namespace`, `ce-component` and `ce-endpoint`.

`Pairer` holds the first half of each pair until the other arrives, within a byte budget
and a time limit: a half that waits longer (its request failed, or the other half was
lost) expires, and the oldest halves are evicted when the budget is spent. Both are
counted by the caller, never an error.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
KINDS: dict[str, Literal["request", "response"]] = {
    REQUEST_TYPE: "request",
    RESPONSE_TYPE: "response",
}
STRUCTURED = "application/cloudevents"


class InvalidEvent(Exception):
    """Not an inference-logger CloudEvent in binary mode; the message says why."""


@dataclass(frozen=True)
class Event:
    """One half of a logged inference: the request or the response."""

    id: str
    kind: Literal["request", "response"]
    source: str
    service: str  # ce-inferenceservicename ("" when absent)
    component: str  # ce-component: predictor, transformer, ... ("" when absent)
    body: bytes
    content_type: str

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.id

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass(frozen=True)
class Pair:
    """A request and the response the predictor gave it."""

    request: Event
    response: Event


def parse_event(headers: Mapping[str, str], body: bytes) -> Event:
    """The event a binary-mode POST carries (`headers` by lower-case name)."""
    content_type = headers.get("content-type", "")
    if content_type.startswith(STRUCTURED):
        raise InvalidEvent("structured-mode CloudEvents are not read; KServe sends binary mode")
    version = headers.get("ce-specversion", "1.0")
    if version != "1.0":
        raise InvalidEvent(f"ce-specversion {version!r} is not 1.0")
    missing = [h for h in ("ce-id", "ce-type", "ce-source") if not headers.get(h)]
    if missing:
        raise InvalidEvent(f"no {', '.join(missing)} header")
    kind = KINDS.get(headers["ce-type"])
    if kind is None:
        raise InvalidEvent(
            f"ce-type {headers['ce-type']!r} is not an inference request or response"
        )
    return Event(
        id=headers["ce-id"],
        kind=kind,
        source=headers["ce-source"],
        service=headers.get("ce-inferenceservicename", ""),
        component=headers.get("ce-component", ""),
        body=body,
        content_type=content_type,
    )


@dataclass
class Pairer:
    """Halves waiting for their other half, oldest first, at most `budget` body bytes held
    and each for at most `ttl_s` seconds. `dropped(outcome)` hears each half let go:
    "expired", "evicted" or "duplicate" (a second half of the same kind and id)."""

    budget: int
    ttl_s: float
    dropped: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    waiting: OrderedDict[tuple[str, str], tuple[float, Event]] = field(default_factory=OrderedDict)
    held: int = 0

    def add(self, event: Event) -> Pair | None:
        """The pair `event` completes, or None while its other half has not come."""
        now = self.clock()
        self._expire(now)
        other = self.waiting.get(event.key)
        if other is not None and other[1].kind != event.kind:
            self._pop(event.key)
            request, response = (other[1], event) if event.kind == "response" else (event, other[1])
            return Pair(request, response)
        if other is not None:
            self._pop(event.key)
            self.dropped("duplicate")
        if event.size > self.budget:
            self.dropped("evicted")
            return None
        while self.held + event.size > self.budget:
            self._pop(next(iter(self.waiting)))
            self.dropped("evicted")
        self.waiting[event.key] = (now, event)
        self.held += event.size
        return None

    def _expire(self, now: float) -> None:
        while self.waiting:
            key, (arrived, _) = next(iter(self.waiting.items()))
            if now - arrived <= self.ttl_s:
                return
            self._pop(key)
            self.dropped("expired")

    def _pop(self, key: tuple[str, str]) -> None:
        _, event = self.waiting.pop(key)
        self.held -= event.size
