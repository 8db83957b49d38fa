"""The shadow control port on the local gateway's admin API: the gateway mirrors a share
of the requests stable answers to its comparator, which asks the canary pinned and compares
the two answers (modelcanary.shadow), numeric outputs within the rollout's tolerance."""

from __future__ import annotations

import httpx

from modelcanary.errors import ModelcanaryError, one_line
from modelcanary.rollout.spec import NumericShadow


class ShadowError(ModelcanaryError):
    """The comparison could not be started or stopped."""


class GatewayShadow:
    """Starts and stops the comparison of one model's canary with its stable version;
    `numeric`: the rollout's tolerance of numeric outputs (unset fields: the export's)."""

    service = "gateway"  # named in errors

    def __init__(
        self,
        url: str,
        token: str,
        model: str,
        stable: str,
        canary: str,
        client: httpx.Client | None = None,
        numeric: NumericShadow | None = None,
    ) -> None:
        self.endpoint = f"{url.rstrip('/')}/admin/shadow/{model}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stable, self.canary = stable, canary
        given = numeric or NumericShadow()
        self.tolerance = {
            k: v for k, v in (("atol", given.atol), ("rtol", given.rtol)) if v is not None
        }
        self.client = client or httpx.Client(timeout=5.0)

    def start(self, percent: int) -> None:
        body = {"canary": self.canary, "stable": self.stable, "percent": percent, **self.tolerance}
        self._send("PUT", body)

    def stop(self) -> None:
        self._send("DELETE", None)

    def _send(self, method: str, body: dict[str, object] | None) -> None:
        try:
            response = self.client.request(method, self.endpoint, json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise ShadowError(
                f"the {self.service} at {self.endpoint} is unreachable: {one_line(exc)}"
            ) from None
        if response.status_code != 200:
            raise ShadowError(
                f"the {self.service} refused {method} {self.endpoint}: {response.status_code} "
                f"{response.text[:200]}"
            )
