"""The traffic router port on the local gateway's admin API, and the canary's readiness
as the gateway sees it (Triton's, through the gateway's route pinned to the version)."""

from __future__ import annotations

import math

import httpx

from modelcanary.errors import ModelcanaryError, one_line
from modelcanary.rollout.ports import Split


class RouterError(ModelcanaryError):
    """The weight could not be applied."""


class GatewayRouter:
    """Splits one model between the stable and the canary version on the gateway."""

    def __init__(
        self,
        url: str,
        token: str,
        model: str,
        stable: str,
        canary: str,
        client: httpx.Client | None = None,
    ) -> None:
        self.endpoint = f"{url.rstrip('/')}/admin/models/{model}/weights"
        self.ready_url = f"{url.rstrip('/')}/v2/models/{model}/versions/{canary}/ready"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stable, self.canary = stable, canary
        self.client = client or httpx.Client(timeout=5.0)

    def route(self, weight: int, promoted: bool) -> None:
        """{stable: 100 - weight, canary: weight}; once promoted, the canary is stable. A
        canary at 0% is not named: the gateway gives it 0% and would refuse a version it
        does not serve, so a canary that was never served can still be rolled back."""
        weights = {self.stable: 100 - weight}
        if weight > 0:
            weights[self.canary] = weight
        stable = self.canary if promoted else self.stable
        try:
            response = self.client.put(
                self.endpoint, json={"weights": weights, "stable": stable}, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise RouterError(
                f"the gateway at {self.endpoint} is unreachable: {one_line(exc)}"
            ) from None
        if response.status_code != 200:
            try:
                reason = response.json().get("error", response.text)
            except ValueError:
                reason = response.text
            raise RouterError(
                f"the gateway refused weights {weights}: {response.status_code} {reason}"
            )

    def split(self) -> Split:
        """The split the gateway applies now (GET of the weights)."""
        try:
            response = self.client.get(self.endpoint, headers=self.headers)
            view = response.json()
            weights, stable = view["weights"], view["stable"]
            if response.status_code != 200 or not isinstance(weights, dict):
                raise ValueError(f"{response.status_code} {response.text[:200]}")
            if not all(isinstance(w, int | float) and math.isfinite(w) for w in weights.values()):
                raise ValueError(f"weights {weights} are not all numbers")
            return Split({str(v): round(w) for v, w in weights.items()}, str(stable))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise RouterError(
                f"the gateway at {self.endpoint} gave no weights: {one_line(exc)}"
            ) from None

    def canary_ready(self) -> bool:
        """The canary version is served and ready (Triton's readiness, through the gateway;
        a version the gateway does not route answers 404)."""
        try:
            response = self.client.get(self.ready_url)
        except httpx.HTTPError as exc:
            raise RouterError(
                f"the gateway at {self.ready_url} is unreachable: {one_line(exc)}"
            ) from None
        return response.status_code == 200
