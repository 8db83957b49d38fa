"""The rules of the shadow comparison (modelcanary.shadow): recording rules over the
comparator's counters, and three alerts for the canary version. Pure.

- ModelVersionLowAgreement (critical: the rollout rolls back): over the shadow window, the
  canary's top-1 answers agree with stable's on less than `agreement_min` of at least
  `agreement_min_pairs` compared pairs, on some classification output.
- ModelVersionNumericOutsideTolerance (critical): over the shadow window, more than
  `numeric_outside_max` of at least `agreement_min_pairs` compared pairs of some numeric
  output differ from stable's beyond the tolerance the comparator applies (the
  rollout's `shadow.numeric`, by default ten times the canary's export tolerance).
- ModelInputDrift (warning: the rollout holds, on-call hears): the live inputs moved from
  stable's reference profile by a PSI above `drift_psi_max` on some feature, scored on at
  least `drift_min_samples` samples.
"""

from __future__ import annotations

from typing import Any

from modelcanary import metrics_contract as mc
from modelcanary.alerts import promql as q
from modelcanary.alerts.profile import Profile

CANARY = "{{ $labels.model }} version {{ $labels.version }}"
BY_OUTPUT = "model, version, output, kind"


def recording_group(profile: Profile) -> dict[str, Any]:
    w = profile.shadow_window

    def increase(series: str, by: str = BY_OUTPUT, match: str = "") -> str:
        return f"sum by ({by}) (increase({series}_total{match}[{w}]))"

    per_output = "model, version, output"
    confidence = {
        side: increase(mc.SHADOW_CONFIDENCE, per_output, f'{{side="{side}"}}')
        for side in ("stable", "canary")
    }
    classified = increase(mc.SHADOW_PAIRS, per_output, '{kind="classification"}')
    return {
        "name": "modelcanary-shadow",
        "rules": [
            {"record": q.SHADOW_PAIRS, "expr": increase(mc.SHADOW_PAIRS)},
            {
                "record": q.SHADOW_AGREEMENT,
                "expr": f"{increase(mc.SHADOW_AGREEING)} / {q.SHADOW_PAIRS}",
            },
            {
                "record": q.SHADOW_CONFIDENCE_SHIFT,
                "expr": f"({confidence['canary']} - {confidence['stable']}) / {classified}",
            },
            {
                "record": q.SHADOW_DROPPED,
                "expr": f"sum by (model, version, reason) (rate({mc.SHADOW_DROPPED}_total[{w}]))",
            },
            {"record": q.SHADOW_DRIFT, "expr": f"max by (model, version) ({mc.SHADOW_DRIFT})"},
            {
                "record": q.SHADOW_PAIRS_TOTAL,
                "expr": f"sum by ({BY_OUTPUT}) ({mc.SHADOW_PAIRS}_total)",
            },
            {
                "record": q.SHADOW_AGREEING_TOTAL,
                "expr": f"sum by ({BY_OUTPUT}) ({mc.SHADOW_AGREEING}_total)",
            },
        ],
    }


def alerts(profile: Profile) -> list[dict[str, Any]]:
    """The three alerts, in the form of modelcanary.alerts.rules' others."""
    p = profile
    return [
        {
            "alert": "ModelVersionLowAgreement",
            "expr": f'{q.SHADOW_AGREEMENT}{{kind="classification"}} < {p.agreement_min:g} '
            f"and on ({BY_OUTPUT}) {q.SHADOW_PAIRS} >= {p.agreement_min_pairs}",
            "for": p.agreement_for,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"Canary {CANARY} agrees with stable on only "
                "{{ $value | humanizePercentage }} of answers",
                "description": f"The top-1 answers of canary {CANARY} (output "
                "{{ $labels.output }}) agree with the stable version's on only "
                "{{ $value | humanizePercentage }} of the samples compared in shadow over the "
                f"last {p.shadow_window}; the minimum is {p.agreement_min:.0%}.",
                "runbook_url": f"{p.runbook_url}#modelversionlowagreement",
            },
        },
        {
            "alert": "ModelVersionNumericOutsideTolerance",
            "expr": f'{q.SHADOW_AGREEMENT}{{kind="numeric"}} < {1 - p.numeric_outside_max:g} '
            f"and on ({BY_OUTPUT}) {q.SHADOW_PAIRS} >= {p.agreement_min_pairs}",
            "for": p.agreement_for,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"Canary {CANARY} answers within tolerance of stable on only "
                "{{ $value | humanizePercentage }} of samples",
                "description": f"The numeric answers of canary {CANARY} (output "
                "{{ $labels.output }}) are within the shadow tolerance of the stable version's "
                "on only {{ $value | humanizePercentage }} of the samples compared over the "
                f"last {p.shadow_window}; at most {p.numeric_outside_max:.0%} may be outside.",
                "runbook_url": f"{p.runbook_url}#modelversionnumericoutsidetolerance",
            },
        },
        {
            "alert": "ModelInputDrift",
            "expr": f"{q.SHADOW_DRIFT} > {p.drift_psi_max:g} and on (model, version) "
            f"max by (model, version) ({mc.SHADOW_DRIFT_SAMPLES}) >= {p.drift_min_samples}",
            "for": p.drift_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"Live inputs of {CANARY} drifted from the training data",
                "description": f"The live inputs compared for {CANARY} moved from the stable "
                'version\'s reference profile: a PSI of {{ $value | printf "%.2f" }} on some '
                f"feature (see {mc.SHADOW_DRIFT}), above {p.drift_psi_max:g}.",
                "runbook_url": f"{p.runbook_url}#modelinputdrift",
            },
        },
    ]
