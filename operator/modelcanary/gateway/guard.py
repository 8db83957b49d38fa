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

A model's max batch size comes from the repository's config.pbtxt when the guard has the
repository (and tritonclient to read it); else, given Triton's control key, from the
config Triton loaded, asked once it answers; until then (or without either) the checks
that shapes fit the bytes sent still bound what Triton allocates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

from modelcanary.gateway.client_errors import blames_request
from modelcanary.gateway.infer_checks import InferLimits, check_infer_request, model_limits
from modelcanary.http.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    lifespan,
    read_body,
    request_headers,
    respond,
    respond_error,
    respond_json,
)
from modelcanary.http.triton_control import CONTROL_HEADER
from modelcanary.http.upstream import (
    PASSED_HEADERS,
    Upstream,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamTimeout,
)

# What may follow /v2/models/{m} or /v2/models/{m}/versions/{v} on a GET passed through.
PASSED_GETS: tuple[list[str], ...] = ([], ["ready"], ["stats"])
SERVER_GETS: tuple[list[str], ...] = (["v2"], ["v2", "health", "live"], ["v2", "health", "ready"])
ASK_EVERY_S = 5.0  # Triton not yet serving the model, or a wrong key: ask again after


class RequestGuard:
    """The ASGI application: `models` are the ones served (the others are 404); their max
    batch sizes and public configs come from `repository` (None: no public config), the
    max batch sizes else from Triton, asked with `control_key`."""

    def __init__(
        self,
        upstream: str,
        models: Sequence[str],
        repository: Path | None,
        max_body_bytes: int,
        timeout_s: float,
        control_key: str | None = None,
    ) -> None:
        self.base = upstream.rstrip("/")
        self.upstream = Upstream(timeout_s)
        self.max_body_bytes = max_body_bytes
        self.control_key = control_key
        self.asked: dict[str, float] = {}  # when Triton was last asked a model's config
        self.limits = {m: model_limits(repository, m, max_body_bytes) for m in models}
        self.public_configs: dict[str, dict[str, object] | None] = dict.fromkeys(models)
        if repository is not None:  # tritonclient reads it: not in the operator's image
            from modelcanary.gateway.public_config import config_json, public_config

            for model in models:
                config = public_config(repository, model)
                self.public_configs[model] = None if config is None else config_json(config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self.upstream.open, self.upstream.close)
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
                message = (
                    f"the guard shows {model[0]!r}'s public config only when started with "
                    "--repository; Triton's own config is a control API"
                )
                await respond_error(send, 404, message)
            else:
                await respond_json(send, 200, config)
        else:
            await respond_error(send, 404, f"no route for {method} {scope['path'][:200]!r}")

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
        rejection = check_infer_request(body, headers, await self._limits(model))
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

    async def _limits(self, model: str) -> InferLimits:
        """The model's limits, with its max batch size once known."""
        limits = self.limits[model]
        if self.control_key is None or not self.due_to_ask(model):
            return limits
        url = f"{self.base}/v2/models/{model}/config"
        try:
            response = await self.upstream.request(
                "GET", url, None, {CONTROL_HEADER: self.control_key}
            )
        except (UpstreamRefused, UpstreamTimeout):
            return limits  # Triton is not up: the inference request will say so
        batch = _max_batch_size(response)
        if batch is not None:
            limits = self.limits[model] = replace(limits, max_batch_size=batch)
        return limits

    def due_to_ask(self, model: str) -> bool:
        """Whether to ask Triton the model's max batch size now (unknown, a key to ask with,
        not asked within ASK_EVERY_S); if so, noted as asked."""
        if self.limits[model].max_batch_size is not None or self.control_key is None:
            return False
        now = time.monotonic()
        if now - self.asked.get(model, -ASK_EVERY_S) < ASK_EVERY_S:
            return False
        self.asked[model] = now
        return True

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


def _max_batch_size(response: UpstreamResponse) -> int | None:
    """The max_batch_size of Triton's answer to GET .../config, or None."""
    if response.status != 200:
        return None
    try:
        config = json.loads(response.body)
    except ValueError:
        return None
    batch = config.get("max_batch_size") if isinstance(config, dict) else None
    return batch if isinstance(batch, int) and not isinstance(batch, bool) else None
