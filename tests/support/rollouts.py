"""ModelCanary and InferenceService objects for a real API server, created with the
kubernetes client (no KServe controller runs: the test marks an InferenceService ready)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelcanary.adapters.kserve_router import KSERVE, config_args
from modelcanary.kube.crd import GROUP, PLURAL, VERSION


def inference_service(name: str, version: str, canary_percent: int | None = None) -> dict[str, Any]:
    """A Serverless InferenceService whose predictor runs VERSION; with CANARY_PERCENT, as
    the chart leaves it once a canary is set (the canary's version at that percent). No
    storageUri: the checks before traffic are "not checked" (a caller testing them sets one)."""
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": "triton"},
            "runtime": "triton",
            "args": config_args(version),
        }
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": f"{KSERVE[0]}/{KSERVE[1]}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": predictor},
    }


def ready_status(name: str) -> dict[str, Any]:
    """What KServe would write once the canary's revision serves: Ready, latest = ready."""
    revision = f"{name}-predictor-00002"
    return {
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ],
        "components": {
            "predictor": {"latestCreatedRevision": revision, "latestReadyRevision": revision}
        },
    }


def model_canary(name: str, model: str, **spec: Any) -> dict[str, Any]:
    """A Serverless-mode ModelCanary of MODEL from version 1 to 2 on the InferenceService
    NAME; SPEC overrides the steps, interval and analysis."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelCanary",
        "metadata": {
            "name": name,
            "annotations": {
                "modelcanary.io/mode": "serverless",
                "modelcanary.io/inference-service": name,
            },
        },
        "spec": {
            "model": model,
            "stable": {"version": "1"},
            "canary": {"version": "2"},
            "steps": [25, 50, 100],
            "interval": "3s",
            "analysis": {
                "failureLimit": 0,
                "errorRatio": {"max": 0.05},
                "noData": {"after": "60s"},
                "beforeFull": {"maxWait": "3s"},
            },
            **spec,
        },
    }


def create_ready_service(
    api: client.CustomObjectsApi, namespace: str, name: str, body: dict[str, Any] | None = None
) -> None:
    """Create an InferenceService (BODY, else one serving version 1) and mark it Ready."""
    api.create_namespaced_custom_object(
        *KSERVE[:2], namespace, KSERVE[2], body or inference_service(name, "1")
    )
    mark_ready(api, namespace, name)


def mark_ready(api: client.CustomObjectsApi, namespace: str, name: str) -> None:
    """Write the InferenceService's status Ready through the status subresource, as KServe."""
    api.patch_namespaced_custom_object_status(
        *KSERVE[:2], namespace, KSERVE[2], name, {"status": ready_status(name)}
    )


def create_canary(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
