"""The traffic router on one KServe InferenceService in Serverless mode (Knative's
`canaryTrafficPercent`).

A version is pinned with Triton's `--model-config-name=v<N>` (the repository's
configs/v<N>.pbtxt), so stable and canary share one model repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client

from modelcanary.adapters.kube_client import NotFoundError, Resource, describe

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")


def config_args(version: str) -> list[str]:
    return [f"--model-config-name=v{version}"]


Services = Mapping[str, dict[str, Any]]  # a namespace's InferenceServices by name


def inference_services(api: client.CustomObjectsApi, namespace: str) -> Services:
    """The namespace's InferenceServices by name: one LIST request."""
    try:
        listed = api.list_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2])
    except Exception as exc:
        raise describe(exc, f"listing {KSERVE[2]} in {namespace}") from None
    items = cast(dict[str, Any], listed).get("items", [])
    return {item["metadata"]["name"]: item for item in items}


def listed(services: Services, isvc: Resource) -> dict[str, Any]:
    """ISVC's body in SERVICES; NotFoundError if it is not there."""
    try:
        return services[isvc.name]
    except KeyError:
        raise NotFoundError(f"{isvc.where}: not found") from None


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

    def canary_ready(self, services: Services) -> bool:
        """The latest revision (the canary's) is ready."""
        status = listed(services, self.isvc).get("status", {})
        predictor = status.get("components", {}).get("predictor", {})
        latest = predictor.get("latestCreatedRevision")
        return bool(latest) and latest == predictor.get("latestReadyRevision")
