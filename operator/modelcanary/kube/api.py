"""The ModelCanary custom object, through the adapters' Kubernetes client."""

from __future__ import annotations

from kubernetes import client

from modelcanary.adapters.kube_client import Resource
from modelcanary.kube.crd import GROUP, PLURAL, VERSION


def model_canary(api: client.CustomObjectsApi, namespace: str, name: str) -> Resource:
    return Resource(api, GROUP, VERSION, PLURAL, namespace, name)
