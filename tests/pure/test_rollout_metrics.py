"""The operator's own series the Grafana dashboards chart: the phase as a state set, the
holdout gate's numbers, each version's weight."""

from __future__ import annotations

from prometheus_client import generate_latest

from modelcanary.kube.rollout_metrics import RolloutMetrics
from modelcanary.rollout.ports import GateResult
from modelcanary.rollout.spec import parse_spec

VERSIONS = {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}}
SPEC = parse_spec({**VERSIONS, "steps": [50, 100], "interval": "10s"}, "test")
DIFFERENCE = {"holdout_difference_low": 0.04, "holdout_difference_high": 0.09}
HOLDOUT = {"holdout_canary": 0.98, "holdout_stable": 0.91, **DIFFERENCE, "holdout_samples": 360}
GATE = GateResult("not worse", "…", HOLDOUT)


def samples(metrics: RolloutMetrics, name: str, key: str) -> dict[str, float]:
    """The series of NAME (all of namespace models, model digits) by their label KEY."""
    return {
        s.labels[key]: s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name and s.labels["namespace"] == "models" and s.labels["model"] == "digits"
    }


def test_the_phase_is_one_for_the_current_phase_and_zero_for_the_others() -> None:
    metrics = RolloutMetrics()
    metrics.export("models", SPEC, 50, "Progressing", GATE)
    phases = samples(metrics, "modelcanary_rollout_phase", "phase")
    assert sum(phases.values()) == 1 and len(phases) == 6
    assert phases["Progressing"] == 1
    metrics.export("models", SPEC, 0, "RolledBack", GATE)
    phases = samples(metrics, "modelcanary_rollout_phase", "phase")
    assert phases["RolledBack"] == 1 and phases["Progressing"] == 0


def test_the_holdout_gate_is_exported_for_the_canary_when_it_ran() -> None:
    metrics = RolloutMetrics()
    metrics.export("models", SPEC, 0, "Pending")
    assert samples(metrics, "modelcanary_rollout_holdout", "value") == {}
    metrics.export("models", SPEC, 0, "Shadowing", GATE)
    holdout = samples(metrics, "modelcanary_rollout_holdout", "value")
    expected = {"canary": 0.98, "stable": 0.91, "difference_low": 0.04, "difference_high": 0.09}
    assert holdout == expected
    versions = {
        s.labels["version"]
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == "modelcanary_rollout_holdout"
    }
    assert versions == {"2"}
    assert b"modelcanary_rollout_weight_percent" in generate_latest(metrics.registry)
