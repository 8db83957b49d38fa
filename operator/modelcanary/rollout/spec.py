"""The rollout spec: a YAML file locally, the `spec` of a ModelCanary in a cluster.

Parsed with pydantic; every invalid field is reported by its path with the reason.
Pure: text in, a frozen spec out.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from modelcanary.alerts.profile import PROFILES
from modelcanary.durations import DURATION_PATTERN, parse_duration
from modelcanary.errors import UsageError, describe_validation_errors

# The spec's thresholds default to the production alert profile's, so a check and the alert
# behind it cannot disagree.
_PRODUCTION = PROFILES["production"]
# At most this many steps: bounds the CEL cost of the CRD's rules on the API server.
MAX_STEPS = 20


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[
    str,
    AfterValidator(_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "minLength": 2,
            "description": "a duration like 30s, 5m or 1h30m",
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VersionRef(_Strict):
    version: Annotated[
        str,
        WithJsonSchema(
            {
                "x-kubernetes-int-or-string": True,
                "description": 'the model version, e.g. "2" (a number is accepted)',
            }
        ),
    ]

    @field_validator("version", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ErrorRatio(_Strict):
    max: float = Field(default=_PRODUCTION["error_ratio_max"], gt=0, lt=1)
    max_above_stable: float | None = Field(
        default=_PRODUCTION["canary_error_margin"], ge=0, lt=1, alias="maxAboveStable"
    )


class LatencyP99(_Strict):
    max_seconds: float = Field(default=_PRODUCTION["latency_p99_max_s"], gt=0, alias="maxSeconds")
    max_ratio_to_stable: float | None = Field(
        default=_PRODUCTION["canary_latency_ratio"], gt=1, alias="maxRatioToStable"
    )
    # A canary P99 below this is fast enough whatever stable's: ratios of milliseconds are noise.
    ratio_floor_seconds: float = Field(
        default=_PRODUCTION["canary_latency_floor_s"], ge=0, alias="ratioFloorSeconds"
    )


class AlertPolicy(_Strict):
    rollback_on: tuple[str, ...] = Field(default=("critical",), alias="rollbackOn")
    hold_on: tuple[str, ...] = Field(default=("warning",), alias="holdOn")


class NoData(_Strict):
    after: Duration = "5m"
    action: Literal["pause", "rollback"] = "pause"


class BeforeFull(_Strict):
    """At the last step before full traffic, wait for evidence that the canary is not worse.

    A check fails only on evidence of a regression; at the step before 100% the canary also
    waits until its error ratio is shown to be at most `errorRatioAboveStable` above stable's
    (the upper end of the confidence sequence), so a small regression that a short rollout
    cannot see is caught before every user gets it. At low traffic that bound may never
    come: after `maxWait` at the step with no evidence against it, the canary goes on.
    """

    error_ratio_above_stable: float | None = Field(
        default=0.01, gt=0, lt=1, alias="errorRatioAboveStable"
    )
    max_wait: Duration = Field(default="10m", alias="maxWait")


class HoldoutGate(_Strict):
    """Before any traffic, the canary against stable on the versions' labelled holdout.

    The canary is rolled back when its holdout metric is worse than stable's by more than
    `margin` (in the metric's units: 0.01 is one point of accuracy) with `confidence`: the
    whole two-sided interval of the paired difference lies beyond the margin."""

    enabled: bool = True
    margin: float = Field(default=0.01, ge=0)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class NumericShadow(_Strict):
    """How close the canary's numeric answers (regression values, scores, embeddings,
    probabilities of a binary model) must stay to stable's on the same requests.

    A pair is outside when some element differs by more than `atol + rtol * |stable|`;
    the canary is rolled back on evidence that more than `maxOutside` of an output's pairs
    are (a sequential test at the spec's alpha). An unset `atol` or `rtol` is ten times the
    canary's export parity tolerance (its manifest's `atol` and `rtol`)."""

    atol: float | None = Field(default=None, ge=0)
    rtol: float | None = Field(default=None, ge=0)
    max_outside: float = Field(
        default=_PRODUCTION["numeric_outside_max"], gt=0, lt=1, alias="maxOutside"
    )


class Shadow(_Strict):
    """Before the first step, `percent` of the requests stable serves are also sent to the
    canary (its answers never reach users) and each pair of answers is compared; it goes on
    during the steps. The canary starts its first step after `minSamples` compared pairs
    with no evidence that it agrees with stable on the top-1 class less often than
    `minAgreement` (a sequential test at the spec's alpha), or after `maxDuration` at low
    traffic with no such evidence; numeric outputs likewise, on evidence that more than
    `numeric.maxOutside` of their pairs differ beyond a tolerance. Evidence rolls back, at
    any step. Live inputs that
    drifted from stable's reference profile by more than `maxInputDrift` (PSI of the worst
    feature, once `minDriftSamples` were scored) hold the rollout."""

    enabled: bool = True
    percent: int = Field(default=10, ge=1, le=100)
    min_samples: int = Field(default=_PRODUCTION["agreement_min_pairs"], ge=1, alias="minSamples")
    min_agreement: float = Field(
        default=_PRODUCTION["agreement_min"], gt=0, lt=1, alias="minAgreement"
    )
    max_duration: Duration = Field(default="5m", alias="maxDuration")
    # live inputs drifted from stable's profile beyond this PSI hold the rollout
    max_input_drift: float = Field(
        default=_PRODUCTION["drift_psi_max"], gt=0, alias="maxInputDrift"
    )
    min_drift_samples: int = Field(
        default=_PRODUCTION["drift_min_samples"], ge=1, alias="minDriftSamples"
    )
    numeric: NumericShadow = Field(default_factory=NumericShadow)


class Analysis(_Strict):
    # The chance that a healthy canary is rolled back by the checks, however often they
    # look: the false-rollback bound of the sequential tests, shared among them.
    alpha: float = Field(default=0.01, gt=0, le=0.2)
    # Failing ticks tolerated (counted once per interval) before a rollback; 0 keeps the
    # sequential tests' guarantee: they fail only on evidence at level alpha.
    failure_limit: int = Field(default=0, ge=0, alias="failureLimit")
    reset_failures_on_pass: bool = Field(default=False, alias="resetFailuresOnPass")
    error_ratio: ErrorRatio = Field(default_factory=ErrorRatio, alias="errorRatio")
    latency_p99: LatencyP99 = Field(default_factory=LatencyP99, alias="latencyP99")
    alerts: AlertPolicy = Field(default_factory=AlertPolicy)
    no_data: NoData = Field(default_factory=NoData, alias="noData")
    before_full: BeforeFull = Field(default_factory=BeforeFull, alias="beforeFull")
    holdout: HoldoutGate = Field(default_factory=HoldoutGate)


class Notify(_Strict):
    alertmanager: str | None = None


def _steps_schema(schema: dict[str, Any]) -> None:
    """What the steps validator checks, for the CRD (bounds in OpenAPI, order in CEL).

    maxItems bounds the cost the API server estimates for the rules; the last-step rule
    guards the empty list (minItems reports it) so it never indexes out of bounds."""
    schema["items"].update(minimum=1, maximum=100)
    schema["minItems"], schema["maxItems"] = 1, MAX_STEPS
    schema["x-kubernetes-validations"] = [
        {
            "rule": "size(self) == 0 || self[size(self) - 1] == 100",
            "message": "the last step must be 100 (full traffic)",
        },
        {
            "rule": "self.isSorted() && self.all(x, self.indexOf(x) == self.lastIndexOf(x))",
            "message": "steps must increase",
        },
    ]


class RolloutSpec(_Strict):
    """What to roll out, in which steps, and what counts as healthy."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                # int-or-string: 2 and "2" are the same version
                {
                    "rule": "string(self.canary.version) != string(self.stable.version)",
                    "message": "canary.version must differ from stable.version",
                }
            ]
        }
    )

    model: str = Field(min_length=1)
    stable: VersionRef
    canary: VersionRef
    steps: tuple[int, ...] = Field(default=(5, 10, 25, 50, 100), json_schema_extra=_steps_schema)
    interval: Duration = "30s"
    analysis: Analysis = Field(default_factory=Analysis)
    shadow: Shadow = Field(default_factory=Shadow)
    progress_deadline: Duration = Field(default="30m", alias="progressDeadline")
    notify: Notify = Field(default_factory=Notify)

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("give at least one step, ending at 100")
        if len(steps) > MAX_STEPS:
            raise ValueError(f"give at most {MAX_STEPS} steps, got {len(steps)}")
        for step in steps:
            if not 1 <= step <= 100:
                raise ValueError(f"each step is a canary percent from 1 to 100, not {step}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must increase, got {list(steps)}")
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100 (full traffic), got {steps[-1]}")
        return steps

    @model_validator(mode="after")
    def _distinct(self) -> RolloutSpec:
        if self.stable.version == self.canary.version:
            raise ValueError(
                f"canary.version must differ from stable.version ({self.stable.version})"
            )
        return self

    @property
    def interval_s(self) -> float:
        return parse_duration(self.interval)

    @property
    def progress_deadline_s(self) -> float:
        return parse_duration(self.progress_deadline)

    @property
    def shadow_max_s(self) -> float:
        return parse_duration(self.shadow.max_duration)

    @property
    def no_data_after_s(self) -> float:
        return parse_duration(self.analysis.no_data.after)


def parse_spec(data: object, source: str) -> RolloutSpec:
    """A spec from parsed YAML or JSON; errors name the file and each field's path."""
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{source}: {describe_validation_errors(exc)}") from None


def load_spec(text: str, source: str) -> RolloutSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML: {exc}") from None
    return parse_spec(data, source)
