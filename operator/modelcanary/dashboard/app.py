"""The live dashboard's web app: the page, the rollouts as JSON, and intents.

A backend (the local run directory, or a cluster through the kubeconfig) reads the
rollouts, their traffic from Prometheus, and records intents, the same intents the
command lines record. Intents are refused unless the dashboard was started with
`--allow-actions`, and then without the token; only requests for a loopback host name
are answered, so no other site can reach the API through DNS rebinding.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from modelcanary.adapters.prometheus import PrometheusSource, QueryError
from modelcanary.asgi_server import starlette_app
from modelcanary.dashboard.page import PAGE
from modelcanary.dashboard.queries import Panel, Points, run_panels
from modelcanary.dashboard.view import ACTIONS, Found, card, step_s, window
from modelcanary.errors import ModelcanaryError, one_line
from modelcanary.rollout.intents import BY_ACTION, IntentAction, refusal

MAX_BODY = 4096
MAX_REASON = 500
LOOPBACK = ["127.0.0.1", "localhost", "::1", "[::1]"]


class Backend(Protocol):
    """Where the rollouts live: read them, their traffic, and record intents."""

    def describe(self) -> str: ...

    def rollouts(self) -> list[Found]: ...

    def panels(self, found: Found) -> list[Panel]: ...

    def traffic(
        self, panels: list[Panel], start: float, end: float, step: float
    ) -> dict[str, dict[str, Points]]: ...

    def record(self, found: Found, action: IntentAction, reason: str) -> str:
        """Record the intent as the command line does; say what was recorded."""
        ...


def prometheus_traffic(
    url: str, source: str, panels: list[Panel], start: float, end: float, step: float
) -> dict[str, dict[str, Points]]:
    """The panels' series from the Prometheus at URL (a backend's `traffic`)."""
    prometheus = PrometheusSource(url, source, 0)
    try:
        return run_panels(prometheus.query_range, panels, start, end, step)
    except QueryError as exc:
        raise ModelcanaryError(str(exc)) from None
    finally:
        prometheus.client.close()


def snapshot(backend: Backend, now: float) -> dict[str, Any]:
    """The document the page polls: every rollout's card."""
    try:
        found = backend.rollouts()
    except ModelcanaryError as exc:
        return _document(backend, now, [], str(exc))
    cards = []
    for rollout in found:
        panels = backend.panels(rollout) if rollout.spec is not None else []
        start, end = window(rollout.state, now)
        problem = ""
        try:
            traffic = backend.traffic(panels, start, end, step_s(start, end))
        except ModelcanaryError as exc:
            traffic, problem = {}, f"no traffic charts: {exc}"
        cards.append(card(rollout, now, panels, traffic, problem))
    return _document(backend, now, cards, "")


def _document(
    backend: Backend, now: float, cards: list[dict[str, Any]], problem: str
) -> dict[str, Any]:
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    return {
        "source": backend.describe(),
        "at": now,
        "clock": clock,
        "rollouts": cards,
        "problem": problem,
    }


def create_app(
    backend: Backend, token: str | None, clock: Callable[[], float] = time.time
) -> Starlette:
    """The app; `token` None: read-only."""

    def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    def rollouts(request: Request) -> Response:
        document = snapshot(backend, clock())
        document["actions"] = token is not None
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    async def intents(request: Request) -> Response:
        if token is None:
            return _error(403, "read-only: start the dashboard with --allow-actions")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _error(401, "missing or wrong token: open the URL the dashboard printed")
        body = b""
        async for chunk in request.stream():  # never more than MAX_BODY held
            body += chunk
            if len(body) > MAX_BODY:
                return _error(413, f"the request body is over {MAX_BODY} bytes")
        try:
            asked = _parse(body)
        except ValueError as exc:
            return _error(400, str(exc))
        return await _record(*asked)

    async def _record(key: str, action_name: str, reason: str) -> Response:
        return await run_in_threadpool(_record_now, key, action_name, reason)

    def _record_now(key: str, action_name: str, reason: str) -> Response:
        try:
            found = next((r for r in backend.rollouts() if r.key == key), None)
            if found is None:
                return _error(404, f"no rollout {key!r}")
            action = next(a for a in ACTIONS if a == action_name)
            verb = BY_ACTION[action]
            if found.spec is None:
                return _error(409, f"cannot {verb.name}: the spec of {key} is not valid")
            refused = refusal(action, found.state.phase)
            if refused is not None:
                return _error(409, refused)
            if verb.reason_required and not reason:
                return _error(400, f"{verb.name} needs a reason")
            message = backend.record(found, action, reason)
        except ModelcanaryError as exc:
            return _error(502, one_line(exc))
        return JSONResponse({"message": message})

    return starlette_app(
        [
            Route("/", page),
            Route("/api/rollouts", rollouts),
            Route("/api/intents", intents, methods=["POST"]),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK)],
    )


def _parse(body: bytes) -> tuple[str, str, str]:
    """key, action and reason of an intent request, or a ValueError naming what is wrong."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object with key, action and reason")
    key, action, reason = data.get("key"), data.get("action"), data.get("reason", "")
    if not isinstance(key, str) or not key:
        raise ValueError("key: the rollout's key, a string")
    if action not in ACTIONS:
        raise ValueError(f"action: one of {', '.join(ACTIONS)}")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValueError(f"reason: a string of at most {MAX_REASON} characters")
    return key, action, reason.strip()


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
