"""Named PromQL: the normalized series and how each metrics source produces them.

Every source's recording rules write the same series, labelled `{model, version, source}`;
the alert rules and the controller read only these. Pure: strings in, strings out.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelcanary import metrics_contract

# Normalized series (Prometheus' level:metric:operations naming).
# requests per second over the window, but those the client broke (4xx, and Triton's
# canceled and rejected requests): they judge no version, as errors or as requests, lest a
# flood of them dilute a failing version's error ratio
REQUESTS = "modelcanary:requests:rate"
REQUESTS_BASELINE = "modelcanary:requests:rate_baseline"  # over the baseline window
# failures that are the version's fault (5xx, backend failures) per second
ERRORS = "modelcanary:errors:rate"
ERROR_RATIO = "modelcanary:error_ratio"  # errors / requests
LATENCY_P99 = "modelcanary:latency_p99:seconds"
TRAFFIC_SHARE = "modelcanary:traffic_share"  # a version's share of its model's requests
EXPECTED_SHARE = "modelcanary:expected_share"  # the share the traffic split gives it
ROLE = "modelcanary:role"  # {model, version, role="stable"|"canary"} 1
# Cumulative counters per serving replica (by `instance` too: the series Prometheus scraped
# from one process), for the controller's sequential tests: counts since a rollout began
# are per-replica differences of these, with Prometheus' reset rule (evidence.py), so a
# replica that restarts, leaves or joins changes nothing already counted.
REQUESTS_TOTAL = "modelcanary:requests:total"
ERRORS_TOTAL = "modelcanary:errors:total"
LATENCY_BUCKETS_TOTAL = "modelcanary:latency_buckets:total"  # by le, in the source's unit
REPLICA = "instance"  # the label that tells a version's replicas apart in the counters

# The shadow comparison, per model and canary version (output and kind where they apply),
# over the profile's shadow window: pairs compared, the share that agree, the canary's mean
# top-1 confidence minus stable's, drops per second by reason, the worst input drift;
# and the cumulative counts for the controller's sequential tests.
SHADOW_PAIRS = "modelcanary:shadow_pairs:increase"
SHADOW_AGREEMENT = "modelcanary:shadow_agreement:ratio"
SHADOW_CONFIDENCE_SHIFT = "modelcanary:shadow_confidence_shift"
SHADOW_DROPPED = "modelcanary:shadow_dropped:rate"
SHADOW_DRIFT = "modelcanary:shadow_input_drift:max_psi"
SHADOW_PAIRS_TOTAL = "modelcanary:shadow_pairs:total"
SHADOW_AGREEING_TOTAL = "modelcanary:shadow_agreeing_pairs:total"

# Raw series that other parts export for the rules: the controller (in every mode) and the
# gateway (locally) publish the split and the roles.
ROLLOUT_WEIGHT = "modelcanary_rollout_weight_percent"
ROLLOUT_ROLE = "modelcanary_rollout_version_role"


@dataclass(frozen=True)
class Source:
    """How one metrics source yields requests, errors and latency per model and version."""

    name: str
    description: str
    # PromQL templates with {w} for the window, summed by (model, version{i}): {i} adds
    # the replica label for the cumulative counters
    requests: str
    errors: str
    latency_p99: str
    latency_buckets: str | None = None  # rate of the histogram's buckets, by (..., le{i})
    latency_unit_s: float = 1.0  # seconds per unit of the histogram's `le`

    def expressions(self, window: str, baseline: str) -> dict[str, str]:
        found = {
            REQUESTS: self.requests.format(w=window, i=""),
            REQUESTS_BASELINE: self.requests.format(w=baseline, i=""),
            ERRORS: self.errors.format(w=window, i=""),
            LATENCY_P99: self.latency_p99.format(w=window, i=""),
            REQUESTS_TOTAL: _counter(self.requests),
            ERRORS_TOTAL: _counter(self.errors),
        }
        if self.latency_buckets is not None:
            found[LATENCY_BUCKETS_TOTAL] = _counter(self.latency_buckets)
        return found


def _counter(template: str) -> str:
    """The cumulative form of a rate template: the counters themselves, summed alike but
    per replica."""
    return template.replace("rate(", "(").replace("[{w}]", "").format(i=f", {REPLICA}")


def _by(expression: str) -> str:
    return f"sum by (model, version{{i}}) ({expression})"


def _buckets(bucket: str) -> str:
    return f"sum by (model, version, le{{i}}) (rate({bucket}[{{w}}]))"


def _p99(bucket: str, scale: str = "") -> str:
    return f"histogram_quantile(0.99, {_buckets(bucket)}){scale}"


def _istio(expression: str, extra: str = "") -> str:
    """Istio names workloads by canonical service and revision (pod labels
    app.kubernetes.io/name and app.kubernetes.io/version): map them to model and version."""
    grouped = (
        f"sum by (destination_canonical_service, destination_canonical_revision{extra}{{i}}) "
        f"({expression})"
    )
    relabelled = (
        f'label_replace(label_replace({grouped}, "model", "$1", '
        f'"destination_canonical_service", "(.+)"), "version", "$1", '
        f'"destination_canonical_revision", "(.+)")'
    )
    return f"sum by (model, version{extra}{{i}}) ({relabelled})"


# Triton's failure reasons (label `reason` of nv_inference_request_failure, 2.51) that are
# not the version's fault: CANCELED, the client canceled the request; REJECTED, a queue
# timeout expired (one the client may set: the sequence batcher always honours the
# request's `timeout`) or a bounded queue was full (load; the latency rules judge that).
# The triton source counts the rest: BACKEND (the model failed), OTHER (e.g. before its
# execution), and failures of a Triton too old to give a reason. Requests Triton cannot
# parse are not failures there at all: they never become inference requests.
TRITON_EXCLUDED_REASONS = "CANCELED|REJECTED"
_TRITON_FAILURES = _by(
    f'rate(nv_inference_request_failure{{{{reason!~"{TRITON_EXCLUDED_REASONS}"}}}}[{{w}}])'
)

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="gateway",
            description="the local gateway (what clients see)",
            requests=_by(
                f'rate({metrics_contract.GATEWAY_REQUESTS}_total{{{{code!~"4.."}}}}[{{w}}])'
            ),
            errors=_by(
                f'rate({metrics_contract.GATEWAY_REQUESTS}_total{{{{code=~"5.."}}}}[{{w}}])'
            ),
            latency_p99=_p99(f"{metrics_contract.GATEWAY_LATENCY}_bucket"),
            latency_buckets=_buckets(f"{metrics_contract.GATEWAY_LATENCY}_bucket"),
        ),
        Source(
            name="triton",
            description="Triton's own counters, and the local backend's latency histogram or "
            "Triton's P99 summary (--metrics-config=summary_latencies=true) in a cluster",
            requests=_by("rate(nv_inference_request_success[{w}])") + " + " + _TRITON_FAILURES,
            errors=_TRITON_FAILURES,
            latency_p99=_p99(f"{metrics_contract.BACKEND_LATENCY}_bucket")
            + " or max by (model, version) "
            + '(nv_inference_request_summary_us{{quantile="0.99"}}) / 1e6',
            latency_buckets=_buckets(f"{metrics_contract.BACKEND_LATENCY}_bucket"),
        ),
        Source(
            name="knative",
            description="KServe Serverless: Knative queue-proxy metrics; the PodMonitor maps the "
            "pod labels serving.kserve.io/inferenceservice and modelcanary.io/version to model "
            "and version",
            requests=_by('rate(revision_app_request_count{{response_code_class!="4xx"}}[{w}])'),
            errors=_by('rate(revision_app_request_count{{response_code_class="5xx"}}[{w}])'),
            latency_p99=_p99("revision_app_request_latencies_bucket", " / 1000"),
            latency_buckets=_buckets("revision_app_request_latencies_bucket"),
            latency_unit_s=0.001,
        ),
        Source(
            name="istio",
            description="KServe Standard behind a Gateway API route on Istio: istio_requests_total "
            "by destination canonical service (model) and revision (version)",
            requests=_istio(
                'rate(istio_requests_total{{reporter="destination", response_code!~"4.."}}[{w}])'
            ),
            errors=_istio(
                'rate(istio_requests_total{{reporter="destination", response_code=~"5.."}}[{w}])'
            ),
            latency_p99="histogram_quantile(0.99, "
            + _istio(
                'rate(istio_request_duration_milliseconds_bucket{{reporter="destination"}}[{w}])',
                ", le",
            )
            + ") / 1000",
            latency_buckets=_istio(
                'rate(istio_request_duration_milliseconds_bucket{{reporter="destination"}}[{w}])',
                ", le",
            ),
            latency_unit_s=0.001,
        ),
    )
}


def selector(series: str, source: str) -> str:
    """One normalized series of one source, for all models and versions (a grouped query)."""
    return f'{series}{{source="{source}"}}'
