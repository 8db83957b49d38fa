"""Metric names and buckets that other parts rely on: the gateway exports them, the
Triton backend mirrors the buckets, and the alert rules query them."""

from __future__ import annotations

from prometheus_client import Gauge

# Seconds; fine enough for a meaningful P99 from 1 ms to 10 s.
# a table of bucket bounds, read across
# fmt: off
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04,
    0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0,
    7.5, 10.0,
)
# fmt: on

# The gateway, per model and version (labels: model, version[, code | reason]).
GATEWAY_REQUESTS = "modelcanary_gateway_requests"  # counter of answered requests; ..._total
# counter of requests the client broke, by reason; never in the error ratio (see
# modelcanary.gateway.client_errors)
GATEWAY_CLIENT_ERRORS = "modelcanary_gateway_client_errors"
GATEWAY_LATENCY = "modelcanary_gateway_request_duration_seconds"  # histogram
GATEWAY_WEIGHT = "modelcanary_gateway_weight_percent"  # gauge: the share routed to a version
GATEWAY_ROLE = "modelcanary_gateway_version_role"  # gauge 1, labels model, version, role

# The local Triton backend (labels: model, version).
BACKEND_LATENCY = "modelcanary_backend_request_duration_seconds"  # histogram

# Response header naming the version that served a request; request header pinning one.
VERSION_HEADER = "x-modelcanary-version"
# Request header of the controller's own requests (golden-sample check): answered like any
# other, counted apart (GATEWAY_PROBES), never as the version's user traffic.
PROBE_HEADER = "x-modelcanary-probe"
GATEWAY_PROBES = "modelcanary_gateway_probe_requests"  # counter; labels model, version, code
# counter of requests a canary failed that the gateway sent (or, over its budget, would
# have sent) once more to stable; labels model, from_version, to_version, outcome
# (answered, failed, over_budget; see modelcanary.gateway.retry). The failed attempt is
# also counted in GATEWAY_REQUESTS as the canary's error.
GATEWAY_RETRIES = "modelcanary_gateway_retries"


# The shadow comparator (modelcanary.shadow), per model and canary version: the version
# whose answers are compared with stable's. A pair is one sample both versions answered.
SHADOW_PAIRS = "modelcanary_shadow_pairs"  # counter; labels model, version, output, kind
# counter of pairs that agree: the same top-1 class (classification), every element within
# the canary's export tolerance (numeric); same labels
SHADOW_AGREEING = "modelcanary_shadow_agreeing_pairs"
# counter: the summed top-1 confidence of classification pairs; labels ..., output, side
# (stable or canary); over SHADOW_PAIRS, each version's mean confidence
SHADOW_CONFIDENCE = "modelcanary_shadow_confidence"
# counter of mirrored requests not compared, by reason: queue_full (the comparator is
# behind), unparseable (a body with no comparable tensors), canary_failed (no 200 from the
# canary), incomparable (answers or inputs that do not fit); labels model, version, reason
SHADOW_DROPPED = "modelcanary_shadow_dropped"
# gauge: the population stability index of the live inputs against stable's reference
# profile, for the few features furthest above their noise; labels model, version, feature
SHADOW_DRIFT = "modelcanary_shadow_input_drift_psi"
SHADOW_DRIFT_SAMPLES = "modelcanary_shadow_input_drift_samples"  # gauge: samples scored
SHADOW_DROP_REASONS = ("queue_full", "unparseable", "canary_failed", "incomparable")
# The cluster comparator (`modelcanary comparator`): counter of KServe inference-logger
# CloudEvents received, by outcome: paired (a request met its response and was offered to
# the comparator), waiting (held for its other half), invalid (not an inference-logger
# event, or a response naming no model and version), too_large, expired (its other half did
# not come in time), evicted (the byte budget was spent), duplicate, ignored (another
# component than the predictor); label outcome
COMPARATOR_EVENTS = "modelcanary_comparator_events"
COMPARATOR_OUTCOMES = (
    "paired",
    "waiting",
    "invalid",
    "too_large",
    "expired",
    "evicted",
    "duplicate",
    "ignored",
)

# The operator (kube.rollout_metrics), per rollout, for the chart's Grafana dashboards:
# 1 for the rollout's phase and 0 for the others (labels namespace, model, phase); the
# holdout gate's last accuracies and difference interval (labels namespace, model, version,
# value: canary, stable, difference_low, difference_high)
ROLLOUT_PHASE = "modelcanary_rollout_phase"
ROLLOUT_HOLDOUT = "modelcanary_rollout_holdout"


def set_role(gauge: Gauge, labels: tuple[str, ...], role: str) -> None:
    """Mark a version `stable` or `canary` on a role gauge whose last label is the role,
    dropping the series of its other role (a promotion swaps them)."""
    gauge.remove(*labels, "canary" if role == "stable" else "stable")  # absent: no-op
    gauge.labels(*labels, role).set(1)
