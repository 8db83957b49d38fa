"""Alerting profiles: every threshold and window of modelcanary's definition of healthy.

Defined once, used by the rule generator (alerts/, the chart's PrometheusRule) and by the
controller, so a threshold cannot differ between the alert and the check.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelcanary.durations import parse_duration
from modelcanary.errors import UsageError, describe_validation_errors


class Profile(BaseModel):
    """Thresholds, windows and `for:` durations of the alert rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    window: str = Field(description="rate window of the recording rules")
    baseline_window: str = Field(description="how far back 'its recent past' looks")
    error_ratio_max: float = Field(gt=0, lt=1, description="critical above this error ratio")
    error_ratio_for: str
    latency_p99_max_s: float = Field(gt=0, description="critical above this P99, seconds")
    latency_for: str
    min_request_rate: float = Field(
        ge=0, description="requests/s a version needs before it is judged"
    )
    qps_share_min: float = Field(
        gt=0, lt=1, description="warn below this fraction of the expected share"
    )
    qps_past_min: float = Field(
        gt=0, lt=1, description="warn below this fraction of its recent rate"
    )
    qps_for: str
    canary_error_margin: float = Field(ge=0, description="canary error ratio above stable by more")
    canary_latency_ratio: float = Field(gt=1, description="canary P99 above stable times this")
    canary_latency_floor_s: float = Field(
        ge=0, description="canary P99 below this is never 'slower than stable' (noise)"
    )
    canary_for: str
    shadow_window: str = Field(description="window of the shadow comparison's agreement")
    agreement_min: float = Field(
        gt=0, le=1, description="critical below this top-1 agreement of canary with stable"
    )
    agreement_min_pairs: int = Field(
        gt=0, description="compared pairs in the shadow window before agreement is judged"
    )
    agreement_for: str
    numeric_outside_max: float = Field(
        gt=0, lt=1, description="critical above this share of numeric pairs out of tolerance"
    )
    drift_psi_max: float = Field(gt=0, description="warn above this input drift (PSI)")
    drift_min_samples: int = Field(gt=0, description="live samples before drift is judged")
    drift_for: str
    runbook_url: str = "https://github.com/modelcanary/modelcanary/blob/main/docs/runbooks.md"

    @field_validator(
        "window",
        "baseline_window",
        "error_ratio_for",
        "latency_for",
        "qps_for",
        "canary_for",
        "shadow_window",
        "agreement_for",
        "drift_for",
    )
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


# Shadow thresholds, the same in both profiles: on the 360 held-out digits an honest
# improvement (digits 1 -> 2) agrees on 91.7% of top-1 answers, a retrain (2 -> 3) on 98.6%,
# a 3/8 label swap (2 -> 5) on 77.5%, the label shift (2 -> 4) on 0%. A minimum of 0.85
# lies 3.4 standard errors below 91.7% at 200 pairs (about 3 false alarms in 10,000
# windows) and 2.5 above 77.5% (the swap is caught in most windows, and surely by the
# `for:`). A PSI above 0.25 is the usual "major shift"; 200 samples make a noise of about
# 0.07 against a 360-sample profile.
# A numeric output's pairs differ beyond the rollout's tolerance (ten times the export's
# parity tolerance by default) on no sample for a version whose weights moved by 1e-4 (the
# largest difference is half the tolerance), and on nearly every sample for a prediction
# moved by a standard deviation: at most 5% outside leaves room for a few outliers.
SHADOW: dict[str, Any] = {"agreement_min": 0.85, "drift_psi_max": 0.25, "numeric_outside_max": 0.05}

PROFILES: dict[str, dict[str, Any]] = {
    # Seconds-long windows so that a local rollout finishes in a minute or two.
    "demo": {
        "name": "demo",
        "window": "15s",
        "baseline_window": "1m",
        "error_ratio_max": 0.05,
        "error_ratio_for": "0s",
        "latency_p99_max_s": 0.25,
        "latency_for": "5s",
        "min_request_rate": 1.0,
        "qps_share_min": 0.5,
        "qps_past_min": 0.3,
        "qps_for": "15s",
        "canary_error_margin": 0.02,
        "canary_latency_ratio": 1.5,
        "canary_latency_floor_s": 0.1,
        "canary_for": "5s",
        **SHADOW,
        "shadow_window": "1m",
        "agreement_min_pairs": 100,
        "agreement_for": "5s",
        "drift_min_samples": 200,
        "drift_for": "15s",
    },
    # Minutes-long windows and `for:` durations that ride out noise.
    "production": {
        "name": "production",
        "window": "5m",
        "baseline_window": "1h",
        "error_ratio_max": 0.01,
        "error_ratio_for": "2m",
        "latency_p99_max_s": 0.5,
        "latency_for": "5m",
        "min_request_rate": 0.5,
        "qps_share_min": 0.5,
        "qps_past_min": 0.3,
        "qps_for": "10m",
        "canary_error_margin": 0.005,
        "canary_latency_ratio": 1.5,
        "canary_latency_floor_s": 0.1,
        "canary_for": "5m",
        **SHADOW,
        "shadow_window": "10m",
        "agreement_min_pairs": 200,
        "agreement_for": "2m",
        "drift_min_samples": 500,
        "drift_for": "10m",
    },
}


def load_profile(name: str, overrides: list[str] | None = None) -> Profile:
    """A named profile with `KEY=VALUE` overrides, every problem named by its key."""
    if name not in PROFILES:
        raise UsageError(f"--profile {name!r} is not known; use one of: {', '.join(PROFILES)}")
    values = dict(PROFILES[name])
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r} is not KEY=VALUE")
        if key not in Profile.model_fields or key == "name":
            settable = ", ".join(k for k in Profile.model_fields if k != "name")
            raise UsageError(f"--set {key}: not a profile setting (settable: {settable})")
        values[key] = value
    try:
        return Profile.model_validate(values)
    except ValidationError as exc:
        raise UsageError(f"profile {name}: {describe_validation_errors(exc)}") from None
