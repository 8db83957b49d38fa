"""The request guard: the gateway's checks of inference requests in front of one Triton,
for a cluster, where clients reach Triton through KServe and never through the gateway.

The chart runs it (`modelcanary guard`) in every predictor pod, as KServe's collocated
`transformer-container`, with Triton's HTTP bound to 127.0.0.1: the guard is the pod's
only HTTP way in to Triton. No split, no weights, one upstream:

    POST /v2/models/{m}[/versions/{v}]/infer   checked (modelcanary.gateway.infer_checks),
                                               then forwarded as sent; a refused one is
                                               answered 400 (413, 415) with one line
    GET  /v2, /v2/health/live, /v2/health/ready,
         /v2/models/{m}[/versions/{v}][/ready|/stats]   passed through
    GET  /v2/models/{m}[/versions/{v}]/config  the public config (gateway.public_config)

and 404 for everything else: Triton's control APIs (model repository, its own model
config, shared memory, logging, trace), other models, other methods. Triton's answers
that blame the request (its 500 to a body it cannot parse) become 400.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

from modelcanary.gateway.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    read_body,
    request_headers,
    respond,
    respond_error,
    respond_json,
)
from modelcanary.gateway.client_errors import blames_request
from modelcanary.gateway.infer_checks import check_infer_request, model_limits
from modelcanary.gateway.public_config import config_json, no_config, public_config
from modelcanary.gateway.upstream import (
    PASSED_HEADERS,
    Upstream,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamTimeout,
)

# What may follow /v2/models/{m} or /v2/models/{m}/versions/{v} on a GET passed through.
PASSED_GETS: tuple[list[str], ...] = ([], ["ready"], ["stats"])
SERVER_GETS: tuple[list[str], ...] = (["v2"], ["v2", "health", "live"], ["v2", "health", "ready"])


class RequestGuard:
    """The ASGI application: `models` are the ones served (the others are 404); their max
    batch sizes and public configs come from `repository` (None: not known)."""

    def __init__(
        self, upstream: str, models: Sequence[str], repository: Path | None,
        max_body_bytes: int, timeout_s: float,
    ) -> None:  # fmt: skip
        self.base = upstream.rstrip("/")
        self.upstream = Upstream(timeout_s)
        self.max_body_bytes = max_body_bytes
        self.limits = {m: model_limits(repository, m, max_body_bytes) for m in models}
        self.public_configs = {m: public_config(repository, m) for m in models}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        parts = path.strip("/").split("/")
        model = _model_path(parts, self.limits)
        path = "/" + "/".join(parts)  # what is forwarded: checked part by part
        if method == "POST" and model is not None and model[1] == ["infer"]:
            await self._infer(scope, receive, send, model[0], path)
        elif method == "GET" and (
            parts in SERVER_GETS or (model is not None and model[1] in PASSED_GETS)
        ):
            await self._pass(send, path)
        elif method == "GET" and model is not None and model[1] == ["config"]:
            config = self.public_configs[model[0]]
            if config is None:
                await respond_error(send, 404, no_config(model[0]))
            else:
                await respond_json(send, 200, config_json(config))
        else:
            await respond_error(send, 404, f"no route for {method} {scope['path'][:200]!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.upstream.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, model: str, path: str
    ) -> None:
        headers = request_headers(scope)
        try:
            body = await read_body(receive, headers, self.max_body_bytes)
        except BodyTooLarge as exc:
            await respond_error(send, 413, str(exc))
            return
        except ClientGone:
            return
        rejection = check_infer_request(body, headers, self.limits[model])
        if rejection is not None:
            await respond_error(send, rejection.status, rejection.message)
            return
        forward = {k: headers[k] for k in PASSED_HEADERS if k in headers}
        response = await self._request(send, "POST", path, body, forward)
        if response is None:
            return
        if blames_request(response):
            response = replace(response, status=400)
        await respond(send, response.status, response.body, response.headers)

    async def _pass(self, send: Send, path: str) -> None:
        response = await self._request(send, "GET", path, None, {})
        if response is not None:
            await respond(send, response.status, response.body, response.headers)

    async def _request(
        self, send: Send, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> UpstreamResponse | None:
        """Triton's answer; None once a 502 or 504 naming why there is none is sent."""
        url = self.base + path
        try:
            return await self.upstream.request(method, url, body, headers)
        except UpstreamRefused as exc:
            await respond_error(send, 502, f"Triton at {self.base} refused the connection: {exc}")
        except UpstreamTimeout as exc:
            await respond_error(send, 504, f"Triton at {self.base} gave {exc}")
        return None


def _model_path(parts: list[str], models: Collection[str]) -> tuple[str, list[str]] | None:
    """For /v2/models/{m}[/versions/{v}]/rest with a served model m and a numeric v: m and
    rest; else None."""
    if len(parts) < 3 or parts[:2] != ["v2", "models"] or parts[2] not in models:
        return None
    rest = parts[3:]
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or not rest[1].isascii() or not rest[1].isdigit():
            return None
        rest = rest[2:]
    return parts[2], rest
