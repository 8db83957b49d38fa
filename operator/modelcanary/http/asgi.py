"""ASGI plumbing of the gateway and the comparator: types, a bounded body, responses."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelcanary.errors import describe_validation_errors
from modelcanary.http.upstream import UpstreamResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CONTENT: Headers = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    """The request body exceeds the gateway's limit (answered 413)."""


class ClientGone(Exception):
    """The client disconnected before its whole body arrived: there is nothing to answer."""


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the ASGI server lower-cases them)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body, refused as soon as it is known to exceed `limit` bytes.

    A body cut short by a disconnect raises ClientGone: it is never passed on truncated."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"request body of {declared} bytes exceeds the gateway's limit of {limit} bytes"
        )
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone(f"the client disconnected after {size} bytes of the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the gateway's limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def json_body(document: object) -> bytes:
    return json.dumps(document).encode()


def error_response(status: int, message: str) -> UpstreamResponse:
    """An error answered by the gateway itself, in the form of an upstream's answer."""
    return UpstreamResponse(status, list(JSON_CONTENT), json_body({"error": message}))


async def lifespan(
    receive: Receive,
    send: Send,
    startup: Callable[[], Awaitable[None]],
    shutdown: Callable[[], Awaitable[None]],
) -> None:
    """Answer the ASGI lifespan protocol: `startup` before the server takes requests,
    `shutdown` once it has stopped taking them."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, document: object) -> None:
    await respond(send, status, json_body(document), JSON_CONTENT)


async def respond_error(
    send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await respond(send, status, json_body({"error": message}), [*JSON_CONTENT, *headers])


Model = TypeVar("Model", bound=BaseModel)


class NonFinite(ValueError):
    """A JSON number that is not finite: NaN, Infinity, -Infinity, or one like 1e999."""


def _refuse_constant(name: str) -> float:
    raise NonFinite(name)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NonFinite(text)
    return number


def non_finite_number(body: bytes) -> str | None:
    """The first non-finite number of a JSON body as written, or None. Python's json and
    pydantic both read NaN and Infinity (and 1e999 as infinity), which JSON does not have."""
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except NonFinite as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None  # not JSON: the model's validation says so
    return None


async def read_model(
    model: type[Model],
    example: str,
    headers: dict[str, str],
    receive: Receive,
    send: Send,
    limit: int,
) -> Model | None:
    """The request's JSON body as `model`; None once the error is answered (413 too large,
    400 naming each bad field or a non-finite number, with an example) or the client left."""
    try:
        body = await read_body(receive, headers, limit)
        number = non_finite_number(body)
        if number is not None:
            await respond_error(
                send, 400, f"the body must be JSON like {example}: {number} is not a finite number"
            )
            return None
        return model.model_validate_json(body)
    except ClientGone:
        return None
    except BodyTooLarge as exc:
        await respond_error(send, 413, str(exc))
    except ValidationError as exc:
        reasons = describe_validation_errors(exc)
        await respond_error(send, 400, f"the body must be JSON like {example}: {reasons}")
    return None
