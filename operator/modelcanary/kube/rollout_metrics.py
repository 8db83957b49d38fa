"""The operator's own series: each version's weight and role, each rollout's phase, and
the holdout gate's last result, per rollout (the Grafana dashboards chart them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

from modelcanary.alerts import promql as q
from modelcanary.metrics_contract import ROLLOUT_HOLDOUT, ROLLOUT_PHASE, set_role
from modelcanary.rollout.intents import FINISHED, UNFINISHED
from modelcanary.rollout.ports import GateResult
from modelcanary.rollout.spec import RolloutSpec

# the gate's numbers (GateResult.numbers) exported, by the `value` label they get
HOLDOUT_VALUES = {
    "canary": "holdout_canary",
    "stable": "holdout_stable",
    "difference_low": "holdout_difference_low",
    "difference_high": "holdout_difference_high",
}


@dataclass
class RolloutMetrics:
    """Gauges the recording rules join traffic with (expected shares, roles)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # what was last exported per (namespace, model): a tick that changes nothing sets none
    exported: dict[tuple[str, str], tuple[object, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weight = Gauge(
            q.ROLLOUT_WEIGHT,
            "Percent of the model's traffic routed to the version",
            ["namespace", "model", "version"],
            registry=self.registry,
        )
        self.role = Gauge(
            q.ROLLOUT_ROLE,
            "1 for each version with its role in the rollout",
            ["namespace", "model", "version", "role"],
            registry=self.registry,
        )

        self.phase = Gauge(
            ROLLOUT_PHASE,
            "1 for the rollout's phase, 0 for the others",
            ["namespace", "model", "phase"],
            registry=self.registry,
        )
        self.holdout = Gauge(
            ROLLOUT_HOLDOUT,
            "The holdout gate's accuracies (canary, stable) and the interval "
            "of their difference (difference_low, difference_high), canary version labelled",
            ["namespace", "model", "version", "value"],
            registry=self.registry,
        )

    def export(
        self,
        namespace: str,
        spec: RolloutSpec,
        weight: int,
        phase: str,
        gate: GateResult | None = None,
    ) -> None:
        stable, canary = spec.stable.version, spec.canary.version
        numbers = gate.numbers if gate is not None else {}
        values = (stable, canary, weight, phase, sorted(numbers.items()))
        if self.exported.get((namespace, spec.model)) == values:
            return
        self.exported[(namespace, spec.model)] = values
        for each in (*UNFINISHED, *FINISHED):
            self.phase.labels(namespace, spec.model, each).set(1 if each == phase else 0)
        for value, key in HOLDOUT_VALUES.items():
            if key in numbers:
                self.holdout.labels(namespace, spec.model, canary, value).set(float(numbers[key]))
        promoted = phase == "Promoted"
        self.weight.labels(namespace, spec.model, stable).set(0 if promoted else 100 - weight)
        self.weight.labels(namespace, spec.model, canary).set(100 if promoted else weight)
        roles = (
            {stable: "canary", canary: "stable"}
            if promoted
            else {stable: "stable", canary: "canary"}
        )
        for version, role in roles.items():
            set_role(self.role, (namespace, spec.model, version), role)
