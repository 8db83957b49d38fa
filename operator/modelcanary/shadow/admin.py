"""The admin API's parts shared by the gateway (locally) and the comparator service (in a
cluster): the bearer token check, the body limit, and the routes of the shadow
comparisons: list them, and read, replace or end one model's. How a comparison is
configured (PUT) differs between the two, so the caller gives it."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from modelcanary.gateway.asgi import Send, respond_error, respond_json
from modelcanary.shadow.comparator import Comparator

NEEDS_TOKEN = "the admin API needs 'Authorization: Bearer <token>'"
MAX_ADMIN_BODY = 64 * 1024


def authorized(headers: dict[str, str], token: bytes) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (constant-time)."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token)


async def list_comparisons(comparator: Comparator, send: Send) -> None:
    """GET /admin/shadow: every comparison that runs."""
    targets = comparator.targets
    await respond_json(send, 200, {"shadow": {m: t.view() for m, t in targets.items()}})


async def one_comparison(
    comparator: Comparator,
    model: str,
    method: str,
    path: str,
    send: Send,
    configure: Callable[[], Awaitable[None]],
) -> None:
    """GET, PUT (`configure`) or DELETE /admin/shadow/{model}."""
    target = comparator.targets.get(model)
    if method == "GET" and target is not None:
        await respond_json(send, 200, target.view())
    elif method == "GET":
        await respond_error(send, 404, f"no comparison runs for {model}")
    elif method == "DELETE":
        comparator.remove(model)
        await respond_json(send, 200, {"model": model, "removed": target is not None})
    elif method == "PUT":
        await configure()
    else:
        await respond_error(send, 405, f"{method} is not allowed on {path}; use GET, PUT or DELETE")
