"""The operator's own series: each version's weight and role, per rollout."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

from modelcanary.alerts import promql as q
from modelcanary.metrics_contract import set_role
from modelcanary.rollout.spec import RolloutSpec


@dataclass
class RolloutMetrics:
    """Gauges the recording rules join traffic with (expected shares, roles)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.weight = Gauge(
            q.ROLLOUT_WEIGHT, "Percent of the model's traffic routed to the version",
            ["namespace", "model", "version"], registry=self.registry,
        )  # fmt: skip
        self.role = Gauge(
            q.ROLLOUT_ROLE, "1 for each version with its role in the rollout",
            ["namespace", "model", "version", "role"], registry=self.registry,
        )  # fmt: skip

    def export(self, namespace: str, spec: RolloutSpec, weight: int, phase: str) -> None:
        stable, canary = spec.stable.version, spec.canary.version
        promoted = phase == "Promoted"
        self.weight.labels(namespace, spec.model, stable).set(0 if promoted else 100 - weight)
        self.weight.labels(namespace, spec.model, canary).set(100 if promoted else weight)
        roles = {stable: "canary", canary: "stable"} if promoted else {
            stable: "stable", canary: "canary"}  # fmt: skip
        for version, role in roles.items():
            set_role(self.role, (namespace, spec.model, version), role)
