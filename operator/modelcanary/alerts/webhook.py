"""The controller's Alertmanager webhook receiver.

Alertmanager posts notifications (webhook payload version 4) to `POST /alertmanager/webhook`
with a bearer token. Valid posts update the `AlertBook` of firing alerts, and the book's
listener hears about newly firing ones at once, so the engine can roll back without
waiting for its next tick. A malformed or unauthenticated post gets 400 or 401 and
changes nothing, and a body over `MAX_BODY_BYTES` gets 413 as soon as it is known to be
(it is never read whole). An alert ends with a "resolved" post or at its `endsAt`, whichever comes
first, so one whose resolution a stalled Alertmanager never sent does not fire for ever
(Alertmanager sends Go's zero time as the `endsAt` of a firing alert: no end yet). An
alert that starts in the future is not recorded (anyone who reaches Alertmanager's API can
post one; the engine also counts a pushed alert only while Prometheus has it).

A controller in another process (the local `modelcanary rollout start`) follows the book
with `GET /alertmanager/alerts?after=N&wait=S`: a long poll that answers as soon as the
book changes past version N (or after S seconds) with the firing alerts.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelcanary.alerts.alertmanager import ALERTS_PATH, WEBHOOK_PATH
from modelcanary.asgi_server import starlette_app
from modelcanary.errors import describe_validation_errors

MAX_WAIT_S = 30.0
POLL_STEP_S = 0.02
MAX_BODY_BYTES = 1024 * 1024  # a notification of hundreds of alerts; Alertmanager's max_alerts
CLOCK_SKEW = timedelta(seconds=60)  # between Prometheus' clock and ours


class BodyRefused(Exception):
    """A request body that was not read whole: cut short by the client (400)."""

    status = 400


class BodyTooLarge(BodyRefused):
    """A request body over the limit (answered 413)."""

    status = 413


async def bounded_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"a body of {declared} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # or timed out (modelcanary.http_guard): nobody to answer
        raise BodyRefused(f"the client left after {size} bytes of the body") from None
    return b"".join(chunks)


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815 (Alertmanager's field names)
    endsAt: datetime | None = None  # noqa: N815
    fingerprint: str = Field(min_length=1)

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """A time without a zone is UTC (Alertmanager always sends one)."""
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    def ended(self, now: datetime) -> bool:
        """Past its `endsAt` (Go's zero time, year 1, is no end)."""
        return self.endsAt is not None and self.endsAt.year > 1 and self.endsAt <= now

    def future(self, now: datetime) -> bool:
        """Starts later than now, beyond clock skew: Prometheus never dates one so."""
        return self.startsAt > now + CLOCK_SKEW


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str
    groupKey: str  # noqa: N815
    alerts: list[WebhookAlert]


class AlertBook:
    """Firing alerts by fingerprint; thread-safe; tells a listener about new ones."""

    def __init__(
        self,
        listener: Callable[[WebhookAlert], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._alerts: dict[str, WebhookAlert] = {}
        self._lock = threading.Lock()
        self.listener = listener
        self.now = now
        self.posts = 0
        self.version = 0  # grows with every accepted post
        self.closed = False  # set before the receiver stops: long polls answer at once

    def apply(self, payload: WebhookPayload) -> list[WebhookAlert]:
        """Record a notification; return the alerts that started firing with it."""
        new = []
        with self._lock:
            self.posts += 1
            now = self.now()
            for alert in payload.alerts:
                if alert.status == "firing" and not alert.ended(now) and not alert.future(now):
                    if alert.fingerprint not in self._alerts:
                        new.append(alert)
                    self._alerts[alert.fingerprint] = alert
                else:
                    self._alerts.pop(alert.fingerprint, None)
            self.version += 1
        if self.listener is not None:
            for alert in new:
                self.listener(alert)
        return new

    def snapshot(self) -> tuple[int, list[WebhookAlert]]:
        with self._lock:
            return self.version, self._current()

    def firing(self, **labels: str) -> list[WebhookAlert]:
        """Firing alerts whose labels include all of `labels`."""
        with self._lock:
            alerts = self._current()
        return [a for a in alerts if all(a.labels.get(k) == v for k, v in labels.items())]

    def _current(self) -> list[WebhookAlert]:
        """The alerts not past their end, forgetting the others (call with the lock held)."""
        now = self.now()
        for fingerprint in [f for f, a in self._alerts.items() if a.ended(now)]:
            del self._alerts[fingerprint]
        return list(self._alerts.values())


def bearer_check(token: str) -> Callable[[Request], JSONResponse | None]:
    """What a request without `Authorization: Bearer <token>` gets (401); None: it has it."""
    expected = token.encode()
    refusal = {"error": "send 'Authorization: Bearer <token>'"}

    def refused(request: Request) -> JSONResponse | None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected):
            return None
        return JSONResponse(refusal, status_code=401, headers={"www-authenticate": "Bearer"})

    return refused


def query_number(request: Request, name: str, default: float, kind: type[float]) -> float:
    """A query parameter as a finite number of `kind` (int or float); ValueError naming it."""
    given = request.query_params.get(name)
    if given is None:
        return default
    try:
        number = kind(given)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        what = "a whole number" if kind is int else "a finite number"
        raise ValueError(f"{name}: {what}, not {given!r}")
    return number


def create_app(book: AlertBook, token: str) -> Starlette:
    """The receiver as an ASGI app (mounted beside the controller, or on its own)."""
    if not token:
        raise ValueError("the webhook receiver needs a bearer token")
    refused = bearer_check(token)

    async def receive(request: Request) -> JSONResponse:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            body = await bounded_body(request)
        except BodyRefused as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            problems = describe_validation_errors(exc, empty="body", limit=5)
            return JSONResponse({"error": f"not an Alertmanager webhook payload: {problems}"}, 400)
        new = book.apply(payload)
        return JSONResponse({"received": len(payload.alerts), "newly_firing": len(new)})

    async def follow(request: Request) -> JSONResponse:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            after = query_number(request, "after", -1, int)
            wait = query_number(request, "wait", 0.0, float)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_S)
        while book.version <= after and not book.closed and time.monotonic() < deadline:
            await asyncio.sleep(POLL_STEP_S)  # cancellable, so a stopping server need not wait
        version, alerts = book.snapshot()
        return JSONResponse(
            {"version": version, "alerts": [a.model_dump(mode="json") for a in alerts]}
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return starlette_app(
        [
            Route(WEBHOOK_PATH, receive, methods=["POST"]),
            Route(ALERTS_PATH, follow, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
