"""The live dashboard's backend for a cluster: ModelCanary resources through the
kubeconfig (the API server, with the kubeconfig's credentials), intents recorded in the
resource's annotation as the other `kubectl canary` verbs record them, and each
version's traffic from a Prometheus URL when one is given (e.g. through `kubectl
port-forward`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict

from modelcanary.dashboard.app import prometheus_traffic
from modelcanary.dashboard.queries import Panel, Points, traffic_panels
from modelcanary.dashboard.view import Found
from modelcanary.kubectl.cluster import Cluster, loaded
from modelcanary.rollout.intents import BY_ACTION, Intent, IntentAction


class ClusterBackend:
    """The ModelCanaries of a namespace (or all), and Prometheus if it is reachable."""

    def __init__(
        self,
        cluster: Cluster,
        all_namespaces: bool,
        prometheus: str | None,
        source: str,
        window: str,
    ) -> None:
        self.cluster, self.all_namespaces = cluster, all_namespaces
        self.prometheus, self.source, self.window = prometheus, source, window

    def describe(self) -> str:
        where = "all namespaces" if self.all_namespaces else f"namespace {self.cluster.namespace}"
        metrics = f"Prometheus {self.prometheus}" if self.prometheus else "no Prometheus"
        return f"{where} as {self.cluster.user}; {metrics}"

    def rollouts(self) -> list[Found]:
        found = []
        for item in self.cluster.list(self.all_namespaces):
            meta = item.get("metadata", {})
            name, namespace = meta.get("name", "?"), meta.get("namespace", "")
            spec, state, _, problem, _ = loaded(item)
            found.append(Found(f"{namespace}/{name}", name, namespace, spec, state, problem))
        return sorted(found, key=lambda f: f.key)

    def panels(self, found: Found) -> list[Panel]:
        if self.prometheus is None or found.spec is None:
            return []
        versions = (found.spec.stable.version, found.spec.canary.version)
        return traffic_panels(found.spec.model, self.source, self.window, versions)

    def traffic(
        self, panels: list[Panel], start: float, end: float, step: float
    ) -> dict[str, dict[str, Points]]:
        if self.prometheus is None or not panels:
            return {}
        return prometheus_traffic(self.prometheus, self.source, panels, start, end, step)

    def record(self, found: Found, action: IntentAction, reason: str) -> str:
        intent = Intent(action, reason, f"{self.cluster.user} (dashboard)", uuid.uuid4().hex)
        self.cluster.annotate(found.name, json.dumps(asdict(intent)), found.namespace)
        return (
            f"modelcanary/{found.name}: {BY_ACTION[action].name} requested by {intent.by}; "
            "the operator acts on it at its next tick"
        )
