"""The traffic router on one KServe InferenceService in Serverless mode (Knative's
`canaryTrafficPercent`).

A version is pinned with Triton's `--model-config-name=v<N>` (the repository's
configs/v<N>.pbtxt), so stable and canary share one model repository.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelcanary.kube.api import Resource

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")


def config_args(version: str) -> list[str]:
    return [f"--model-config-name=v{version}"]


def isvc_ready(isvc: dict[str, Any]) -> bool:
    conditions = isvc.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class ServerlessRouter:
    """`spec.predictor.canaryTrafficPercent` of one InferenceService.

    Knative keeps the last ready revision (stable) for the traffic the canary does not
    get. Promotion removes the field (the latest revision takes all traffic); a rollback
    sets it to 0 and restores the stable model spec.
    """

    def __init__(
        self, api: client.CustomObjectsApi, namespace: str, name: str, stable: str, canary: str
    ) -> None:
        self.isvc = Resource(api, *KSERVE, namespace, name)
        self.stable, self.canary = stable, canary

    def route(self, weight: int, promoted: bool) -> None:
        predictor: dict[str, Any]
        if promoted:
            predictor = {"canaryTrafficPercent": None}
        elif weight == 0:
            predictor = {"canaryTrafficPercent": 0, "model": {"args": config_args(self.stable)}}
        else:
            predictor = {
                "canaryTrafficPercent": weight,
                "model": {"args": config_args(self.canary)},
            }
        self.isvc.patch({"spec": {"predictor": predictor}})

    def canary_ready(self) -> bool:
        """The latest revision (the canary's) is ready."""
        isvc = self.isvc.get()
        predictor = isvc.get("status", {}).get("components", {}).get("predictor", {})
        latest = predictor.get("latestCreatedRevision")
        return bool(latest) and latest == predictor.get("latestReadyRevision")
