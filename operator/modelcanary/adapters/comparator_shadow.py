"""The shadow control port on a cluster's comparator (`modelcanary comparator`): the
stable predictor's KServe inference logger sends it each request and answer, and it asks
the canary predictor, at the URL given here, pinned to the canary version.

The canary predictor's URL is looked up when the comparison starts (the InferenceService
status, as for the checks before traffic: modelcanary.kube.check_target), so a canary
revision published after the rollout began is the one compared."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from modelcanary.adapters.gateway_shadow import GatewayShadow, ShadowError
from modelcanary.errors import ModelcanaryError
from modelcanary.rollout.spec import NumericShadow


def infer_url(predictor: str, model: str, version: str) -> str:
    """The Open Inference Protocol URL of one version on a predictor."""
    return f"{predictor.rstrip('/')}/v2/models/{model}/versions/{version}/infer"


class ComparatorShadow(GatewayShadow):
    """Starts and stops one rollout's comparison on the comparator's admin API;
    `canary_predictor` returns the canary predictor's base URL."""

    service = "comparator"

    def __init__(
        self,
        url: str,
        token: str,
        model: str,
        stable: str,
        canary: str,
        canary_predictor: Callable[[], str],
        client: httpx.Client | None = None,
        numeric: NumericShadow | None = None,
    ) -> None:
        super().__init__(url, token, model, stable, canary, client, numeric)
        self.model, self.canary_predictor = model, canary_predictor

    def start(self, percent: int) -> None:
        try:
            predictor = self.canary_predictor()
        except ModelcanaryError as exc:
            raise ShadowError(f"no canary predictor to compare with: {exc}") from None
        body = {
            "stable": self.stable,
            "canary": self.canary,
            "percent": percent,
            "canary_url": infer_url(predictor, self.model, self.canary),
            **self.tolerance,
        }
        self._send("PUT", body)
