"""The admin API's parts shared by the gateway (locally) and the comparator service (in a
cluster): the bearer token check, the body limit, and the routes of the shadow
comparisons: list them, and read, replace or end one model's. How a comparison is
configured (PUT) differs between the two, so the caller gives it; both take the numeric
tolerance (`atol`, `rtol`: the rollout's `shadow.numeric`; unset, a multiple of the
canary's export tolerance)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from modelcanary.http.asgi import Send, respond_error, respond_json
from modelcanary.shadow.live_comparison import Comparator

NEEDS_TOKEN = "the admin API needs 'Authorization: Bearer <token>'"
MAX_ADMIN_BODY = 64 * 1024


def authorized(headers: dict[str, str], token: bytes) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (constant-time)."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token)


class ToleranceFields(BaseModel):
    """The numeric tolerance of a PUT /admin/shadow/{m} body; unset: from the export's."""

    model_config = ConfigDict(extra="forbid")

    atol: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    rtol: float | None = Field(default=None, ge=0, allow_inf_nan=False)


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
