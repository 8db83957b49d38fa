"""The comparator's Prometheus metrics (names in modelcanary.metrics_contract), in the
registry it is given: the gateway's, so that they are scraped with the gateway's."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelcanary import metrics_contract as mc
from modelcanary.modelrepo.drift import DriftReport
from modelcanary.modelrepo.output_comparison import OutputKind
from modelcanary.shadow.pairs import OutputPairs

# Features named on the drift gauge per model and version: the furthest above their noise.
WORST_FEATURES = 3


class ShadowMetrics:
    """Pairs, agreeing pairs, confidence sums, drops and the worst input drift."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # one declaration per metric, alike on purpose: its help and labels are what /metrics shows
        self.pairs = Counter(
            mc.SHADOW_PAIRS,
            "Samples both stable and the canary answered, compared, by model, canary version, "
            "output and kind",
            ["model", "version", "output", "kind"],
            registry=registry,
        )
        self.agreeing = Counter(
            mc.SHADOW_AGREEING,
            "Compared samples on which the canary agrees with stable: the same top-1 class "
            "(classification) or every element within tolerance (numeric)",
            ["model", "version", "output", "kind"],
            registry=registry,
        )
        self.confidence = Counter(
            mc.SHADOW_CONFIDENCE,
            "Summed top-1 confidence of compared classification samples, by side "
            "(stable or canary)",
            ["model", "version", "output", "side"],
            registry=registry,
        )
        self.dropped = Counter(
            mc.SHADOW_DROPPED,
            "Mirrored requests not compared, by reason",
            ["model", "version", "reason"],
            registry=registry,
        )
        self.drift = Gauge(
            mc.SHADOW_DRIFT,
            "Population stability index of live inputs against stable's reference profile, "
            f"for the {WORST_FEATURES} features furthest above their sampling noise",
            ["model", "version", "feature"],
            registry=registry,
        )
        self.drift_samples = Gauge(
            mc.SHADOW_DRIFT_SAMPLES,
            "Live samples the input drift was last scored on",
            ["model", "version"],
            registry=registry,
        )
        self.named: dict[tuple[str, str], set[str]] = {}

    def started(self, model: str, version: str, kinds: Mapping[str, OutputKind]) -> None:
        """Create a new comparison's counters at 0, so that Prometheus' increase() and rate()
        count its first pairs and drops too."""
        for reason in mc.SHADOW_DROP_REASONS:
            self.dropped.labels(model, version, reason)
        for output, kind in kinds.items():
            self.pairs.labels(model, version, output, kind)
            self.agreeing.labels(model, version, output, kind)
            if kind == "classification":
                for side in ("stable", "canary"):
                    self.confidence.labels(model, version, output, side)

    def compared(self, model: str, version: str, outputs: list[OutputPairs]) -> None:
        for o in outputs:
            self.pairs.labels(model, version, o.output, o.kind).inc(o.pairs)
            self.agreeing.labels(model, version, o.output, o.kind).inc(o.agreeing)
            if o.kind == "classification":
                self.confidence.labels(model, version, o.output, "stable").inc(o.confidence_stable)
                self.confidence.labels(model, version, o.output, "canary").inc(o.confidence_canary)

    def drop(self, model: str, version: str, reason: str) -> None:
        self.dropped.labels(model, version, reason).inc()

    def drifted(self, model: str, version: str, report: DriftReport) -> None:
        """Name the worst features of a fresh report, dropping those no longer among them."""
        worst = {f.name: f.psi for f in report.worst(WORST_FEATURES)}
        for feature in self.named.get((model, version), set()) - worst.keys():
            self.drift.remove(model, version, feature)
        for feature, psi in worst.items():
            self.drift.labels(model, version, feature).set(psi)
        self.named[(model, version)] = set(worst)
        self.drift_samples.labels(model, version).set(report.samples)

    def forget(self, model: str, version: str) -> None:
        """Drop a finished comparison's drift gauges (its counters stay: they are counts)."""
        for feature in self.named.pop((model, version), set()):
            self.drift.remove(model, version, feature)
        self.drift_samples.remove(model, version)  # absent: no-op
