"""The traffic router on Gateway API: weights of an HTTPRoute's backendRefs to one KServe
InferenceService per version (KServe Standard / RawDeployment mode)."""

from __future__ import annotations

from kubernetes import client

from modelcanary.adapters.kserve_router import KSERVE, Services, isvc_ready, listed
from modelcanary.adapters.kube_client import Resource

ROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")


class StandardRouter:
    """Weights of an HTTPRoute's backendRefs to the versions' predictor services."""

    def __init__(
        self,
        api: client.CustomObjectsApi,
        namespace: str,
        route: str,
        model: str,
        stable: str,
        canary: str,
    ) -> None:
        self.route_resource = Resource(api, *ROUTES, namespace, route)
        self.canary_isvc = Resource(api, *KSERVE, namespace, f"{model}-v{canary}")
        self.services = {
            stable: f"{model}-v{stable}-predictor",
            canary: f"{model}-v{canary}-predictor",
        }
        self.stable, self.canary = stable, canary

    def route(self, weight: int, promoted: bool) -> None:
        weights = {self.services[self.stable]: 100 - weight, self.services[self.canary]: weight}
        route = self.route_resource.get()
        rules = route.get("spec", {}).get("rules", [])
        touched = False
        for rule in rules:
            for ref in rule.get("backendRefs", []):
                if ref.get("name") in weights:
                    ref["weight"] = weights[ref["name"]]
                    touched = True
        if not touched:
            rules.append(
                {"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in weights.items()]}
            )
        self.route_resource.patch({"spec": {"rules": rules}})

    def canary_ready(self, services: Services) -> bool:
        """The canary version's InferenceService is Ready."""
        return isvc_ready(listed(services, self.canary_isvc))
