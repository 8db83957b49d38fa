"""The adapters a controller is built from, chosen by its configuration."""

from __future__ import annotations

from typing import Literal

from kubernetes import client

from modelcanary.adapters.alertmanager_notifier import AlertmanagerNotifier
from modelcanary.adapters.gateway_api_router import StandardRouter
from modelcanary.adapters.kserve_router import ServerlessRouter
from modelcanary.adapters.quiet_notifier import QuietNotifier
from modelcanary.rollout.ports import Notifier

KubeMode = Literal["serverless", "standard"]


def notifier(alertmanager: str | None) -> Notifier:
    """Alertmanager when configured, otherwise the quiet notifier."""
    return AlertmanagerNotifier(alertmanager) if alertmanager else QuietNotifier()


def kube_router(
    mode: KubeMode,
    api: client.CustomObjectsApi,
    namespace: str,
    isvc: str,
    model: str,
    stable: str,
    canary: str,
) -> ServerlessRouter | StandardRouter:
    """KServe's canaryTrafficPercent (Serverless) or an HTTPRoute's weights (Standard)."""
    if mode == "standard":
        return StandardRouter(api, namespace, isvc, model, stable, canary)
    return ServerlessRouter(api, namespace, isvc, stable, canary)


def predictor_service(mode: KubeMode, isvc: str, model: str, version: str) -> str:
    """The InferenceService whose predictor serves `version` pinned."""
    return f"{model}-v{version}" if mode == "standard" else isvc
