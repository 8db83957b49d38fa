"""The comparator alone, for a cluster: an ASGI app fed by KServe's inference logger.

    POST /  (any other path too)          a CloudEvent of the logger, HTTP binary mode
    GET  /metrics                         comparisons, drops, events by outcome
    GET  /healthz                         200 while it serves
    GET  /admin/shadow                    every comparison it runs
    GET, PUT, DELETE /admin/shadow/{m}    {"stable": "2", "canary": "4", "percent": 10,
                                           "canary_url": "http://.../v2/models/m/versions/4/infer",
                                           "atol": 0.001, "rtol": 0.01}

The stable predictor's logger (`spec.predictor.logger`, `mode: all`) posts each request
and its 200 answer; they are paired by id (modelcanary.shadow.cloudevents) and the pair is
offered to the same Comparator the gateway runs (modelcanary.shadow.live_comparison), which
sends the request pinned to the canary predictor and compares the two answers. Which model
and version answered is read from the response (`model_name`, `model_version`, which
Triton always sets), so a canary revision that logs too is never compared with itself.
An event is answered at once (202) and never waits for a comparison; a bad event is
counted and answered 4xx, and no payload stops the service. The admin API sits behind a
bearer token; what the manifests say about two versions is read (off the event loop) by
the `catalog` the command gives, from the mounted repository or the storageUri.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelcanary import metrics_contract as mc
from modelcanary.errors import UsageError
from modelcanary.http.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    lifespan,
    read_body,
    read_model,
    request_headers,
    respond,
    respond_error,
    respond_json,
)
from modelcanary.shadow.admin import (
    MAX_ADMIN_BODY,
    NEEDS_TOKEN,
    ToleranceFields,
    authorized,
    list_comparisons,
    one_comparison,
)
from modelcanary.shadow.cloudevents import Event, InvalidEvent, Pair, Pairer, parse_event
from modelcanary.shadow.live_comparison import Comparator
from modelcanary.shadow.metrics import ShadowMetrics
from modelcanary.shadow.pairs import VersionPair
from modelcanary.shadow.settings import ShadowSettings

Catalog = Callable[[str, str, str], VersionPair]  # (model, stable, canary); UsageError
METRICS_CONTENT = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
ACCEPTED = b'{"accepted": true}'
EXAMPLE = (
    '{"stable": "2", "canary": "4", "percent": 10, '
    '"canary_url": "http://digits-predictor-latest/v2/models/digits/versions/4/infer"}'
)


class ServiceSettings(BaseModel):
    """The comparator's limits, and those of the events it holds."""

    model_config = ConfigDict(extra="forbid")

    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    max_event_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    pending_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # halves awaiting their pair
    pending_s: float = Field(default=30.0, gt=0)


class ComparisonUpdate(ToleranceFields):
    """The body of PUT /admin/shadow/{m}; `atol` and `rtol` are optional."""

    stable: str
    canary: str
    percent: float = Field(ge=0, le=100)
    canary_url: str

    @field_validator("canary_url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL: {url!r}")
        return url


class ComparatorService:
    """The ASGI application."""

    def __init__(
        self,
        settings: ServiceSettings,
        token: str,
        catalog: Catalog,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not token:
            raise UsageError("the comparator needs an admin token")
        self.settings, self.token, self.catalog = settings, token.encode(), catalog
        self.registry = CollectorRegistry()
        self.comparator = Comparator(settings.shadow, ShadowMetrics(self.registry), say=say)
        self.events = Counter(
            mc.COMPARATOR_EVENTS,
            "KServe inference-logger CloudEvents received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in mc.COMPARATOR_OUTCOMES:
            self.events.labels(outcome)
        self.pairer = Pairer(settings.pending_bytes, settings.pending_s, self.count)

    def count(self, outcome: str) -> None:
        self.events.labels(outcome).inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self.comparator.start, self.comparator.stop)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/admin" or path.startswith("/admin/"):
            await self._admin(scope, receive, send)
        elif method == "GET" and path == "/metrics":
            await respond(send, 200, generate_latest(self.registry), METRICS_CONTENT)
        elif method == "GET" and path == "/healthz":
            await respond(send, 200, b"", [])
        elif method == "POST":
            await self._event(scope, receive, send)
        else:
            await respond_error(send, 404, f"no route for {method} {path}")

    # -- the logger's events -------------------------------------------------------------

    async def _event(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        try:
            body = await read_body(receive, headers, self.settings.max_event_bytes)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            self.count("too_large")
            await respond_error(send, 413, str(exc))
            return
        try:
            event = parse_event(headers, body)
        except InvalidEvent as exc:
            self.count("invalid")
            await respond_error(send, 400, str(exc))
            return
        if event.component not in ("", "predictor"):
            self.count("ignored")
        else:
            pair = self.pairer.add(event)
            self.count("waiting" if pair is None else "paired")
            if pair is not None and self.comparator.targets:
                self._offer(pair)
        await respond(send, 202, ACCEPTED, [(b"content-type", b"application/json")])

    def _offer(self, pair: Pair) -> None:
        try:
            model, version = answered_by(pair.response)
        except InvalidEvent:
            self.count("invalid")
            return
        request = pair.request
        headers = {"content-type": request.content_type} if request.content_type else {}
        self.comparator.offer(model, version, request.body, headers, pair.response.body, [])

    # -- the admin API -------------------------------------------------------------------

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, parts = scope["method"], scope["path"].strip("/").split("/")
        headers = request_headers(scope)
        if not authorized(headers, self.token):
            await respond_error(send, 401, NEEDS_TOKEN, [(b"www-authenticate", b"Bearer")])
            return
        if method == "GET" and parts == ["admin", "shadow"]:
            await list_comparisons(self.comparator, send)
            return
        if len(parts) != 3 or parts[1] != "shadow":
            await respond_error(send, 404, f"no admin route for {method} {scope['path']}")
            return
        model = parts[2]
        await one_comparison(
            self.comparator,
            model,
            method,
            scope["path"],
            send,
            lambda: self._configure(model, headers, receive, send),
        )

    async def _configure(
        self, model: str, headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        update = await read_model(ComparisonUpdate, EXAMPLE, headers, receive, send, MAX_ADMIN_BODY)
        if update is None:
            return
        if update.stable == update.canary:
            await respond_error(send, 400, f"canary {update.canary!r} is the stable version itself")
            return
        try:
            versions = await asyncio.to_thread(self.catalog, model, update.stable, update.canary)
            target = self.comparator.configure(
                model,
                update.stable,
                update.canary,
                update.percent,
                update.canary_url,
                versions,
                update.atol,
                update.rtol,
            )
        except UsageError as exc:
            await respond_error(send, 400, str(exc))
            return
        await respond_json(send, 200, {**target.view(), "canary_url": update.canary_url})


def answered_by(response: Event) -> tuple[str, str]:
    """(model, version) an Open Inference Protocol response names; InvalidEvent if none."""
    try:
        document: Any = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidEvent("the response is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidEvent("the response is not a JSON object")
    model, version = document.get("model_name"), document.get("model_version")
    if not isinstance(model, str) or not isinstance(version, str) or not model or not version:
        raise InvalidEvent("the response names no model_name and model_version")
    return model, version
