"""What an InferenceService tells the checks before traffic: where its model repository is
(`spec.predictor.model.storageUri`) and where KServe publishes its predictors (`status`).

Serverless mode (one InferenceService, two revisions): the canary is the latest revision
and stable the one before, reached at the URLs KServe publishes for the traffic tags
`latest` and `prev` (tag routing); without a tagged URL, stable is reached at the
predictor's own address (it holds all traffic before the first step). Standard mode (one
InferenceService per version): each version at its InferenceService's predictor address.
Cluster-internal addresses come before external URLs: the operator runs in the cluster.
"""

from __future__ import annotations

from typing import Any

Isvc = dict[str, Any]
FRAMEWORKS = ("triton", "onnx", "tensorflow", "pytorch", "sklearn", "xgboost", "custom")


def storage_uri(isvc: Isvc) -> str | None:
    """The predictor's storageUri: `model` (the v1beta1 form), the predictor itself, or a
    framework spec (`triton`, `onnx`, ...)."""
    predictor = isvc.get("spec", {}).get("predictor", {}) or {}
    for holder in (predictor.get("model"), predictor, *(predictor.get(f) for f in FRAMEWORKS)):
        if isinstance(holder, dict) and isinstance(holder.get("storageUri"), str):
            return str(holder["storageUri"]) or None
    return None


def predictor_address(isvc: Isvc) -> str | None:
    """The predictor's URL as published: its address, its url, then the InferenceService's."""
    status = isvc.get("status", {}) or {}
    predictor = (status.get("components", {}) or {}).get("predictor", {}) or {}
    for url in (
        (predictor.get("address") or {}).get("url"),
        predictor.get("url"),
        (status.get("address") or {}).get("url"),
        status.get("url"),
    ):
        if isinstance(url, str) and url:
            return url
    return None


def revision_urls(isvc: Isvc) -> tuple[str | None, str | None]:
    """(stable, canary) of a Serverless InferenceService: the `prev` and `latest` tagged
    traffic URLs, stable falling back to the predictor's address."""
    status = isvc.get("status", {}) or {}
    predictor = (status.get("components", {}) or {}).get("predictor", {}) or {}
    stable = canary = None
    for target in predictor.get("traffic") or []:
        url = target.get("url")
        if not isinstance(url, str) or not url:
            continue
        if target.get("tag") == "latest" or (canary is None and target.get("latestRevision")):
            canary = url
        elif target.get("tag") == "prev" or (
            stable is None and target.get("latestRevision") is False
        ):
            stable = url
    return stable or predictor_address(isvc), canary
