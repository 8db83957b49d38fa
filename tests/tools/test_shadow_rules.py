"""The shadow comparison's recording and alert rules under `promtool test rules`, with
series in the comparator's own format (modelcanary.shadow.metrics): the label-bug version
is flagged, an honest improvement is not, too few pairs are not judged, and drift warns
only above its threshold on enough samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelcanary.alerts.profile import load_profile
from tests.support.promtool import run_rule_tests

# 14/16 is exact in floating point: "at the threshold" is exactly at it
PROFILE = load_profile("demo", ["agreement_min=0.875"])
RUNBOOK = PROFILE.runbook_url
STEPS = 180


Series = list[dict[str, str]]


def series(name: str, values: str) -> dict[str, str]:
    return {"series": name, "values": values}


def recorded(expr: str, *samples: tuple[str, float]) -> dict[str, Any]:
    """promtool's check of the recording rule EXPR at 2m: one (LABELS, VALUE) per sample."""
    expected = [{"labels": labels, "value": value} for labels, value in samples]
    return {"expr": expr, "eval_time": "2m", "exp_samples": expected}


def pairs(version: str, per_second: int, agreeing: int, kind: str = "classification") -> Series:
    labels = f'model="m",version="{version}",output="logits",kind="{kind}"'
    return [
        series(f"modelcanary_shadow_pairs_total{{{labels}}}", f"0+{per_second}x{STEPS}"),
        series(f"modelcanary_shadow_agreeing_pairs_total{{{labels}}}", f"0+{agreeing}x{STEPS}"),
    ]


def confidence(version: str, stable: float, canary: float) -> Series:
    labels = f'model="m",version="{version}",output="logits"'
    return [
        series(
            f'modelcanary_shadow_confidence_total{{{labels},side="{side}"}}', f"0+{rate}x{STEPS}"
        )
        for side, rate in (("stable", stable), ("canary", canary))
    ]


def drift(version: str, psi: float, samples: int) -> Series:
    labels = f'model="m",version="{version}"'
    psi_series = "modelcanary_shadow_input_drift_psi"
    return [
        series(f'{psi_series}{{{labels},feature="pixels[3]"}}', f"{psi}x{STEPS}"),
        series(f'{psi_series}{{{labels},feature="pixels[9]"}}', f"{psi / 2}x{STEPS}"),
        series(f"modelcanary_shadow_input_drift_samples{{{labels}}}", f"{samples}x{STEPS}"),
    ]


def low_agreement(version: str, value: str) -> dict[str, Any]:
    labels = {"model": "m", "version": version, "output": "logits"}
    return {
        "exp_labels": {"severity": "critical", **labels, "kind": "classification"},
        "exp_annotations": {
            "summary": f"Canary m version {version} agrees with stable on only {value} of answers",
            "description": f"The top-1 answers of canary m version {version} (output logits) "
            f"agree with the stable version's on only {value} of the samples compared in shadow "
            "over the last 1m; the minimum is 88%.",
            "runbook_url": f"{RUNBOOK}#modelversionlowagreement",
        },
    }


def outside_tolerance(version: str, value: str) -> dict[str, Any]:
    labels = {"model": "m", "version": version, "output": "logits"}
    return {
        "exp_labels": {"severity": "critical", **labels, "kind": "numeric"},
        "exp_annotations": {
            "summary": f"Canary m version {version} answers within tolerance of stable on only "
            f"{value} of samples",
            "description": f"The numeric answers of canary m version {version} (output logits) "
            "are within the shadow tolerance of the stable version's on only "
            f"{value} of the samples compared over the last 1m; at most 5% may be outside.",
            "runbook_url": f"{RUNBOOK}#modelversionnumericoutsidetolerance",
        },
    }


def input_drift(version: str, value: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "model": "m", "version": version},
        "exp_annotations": {
            "summary": f"Live inputs of m version {version} drifted from the training data",
            "description": f"The live inputs compared for m version {version} moved from the "
            f"stable version's reference profile: a PSI of {value} on some feature (see "
            "modelcanary_shadow_input_drift_psi), above 0.25.",
            "runbook_url": f"{RUNBOOK}#modelinputdrift",
        },
    }


def test_low_agreement_rolls_back_the_label_bug_not_an_improvement(tmp_path: Path) -> None:
    series = [
        *pairs("4", 16, 0),  # labels shifted by one: 0%
        *pairs("5", 16, 12),  # 3 and 8 swapped: 75%
        *pairs("3", 16, 14),  # exactly at the minimum (87.5%): quiet
        *pairs("2", 16, 15),  # an honest improvement (93.75%): quiet
        *pairs("6", 1, 0),  # 60 pairs in the window, fewer than 100: not judged
        *pairs("7", 16, 0, kind="numeric"),  # a numeric output: its tolerance alert instead
    ]
    alerts = {
        "ModelVersionLowAgreement": [low_agreement("4", "0%"), low_agreement("5", "75%")],
        "ModelVersionNumericOutsideTolerance": [outside_tolerance("7", "0%")],
    }
    logits = 'output="logits",kind="classification"'
    ratios = (("2", 0.9375), ("3", 0.875), ("4", 0), ("5", 0.75))
    checks = [
        recorded(
            'modelcanary:shadow_agreement:ratio{version=~"[2-5]"}',
            *(
                (f'modelcanary:shadow_agreement:ratio{{model="m",version="{v}",{logits}}}', ratio)
                for v, ratio in ratios
            ),
        ),
        recorded(
            'modelcanary:shadow_pairs:increase{version="4"}',
            (f'modelcanary:shadow_pairs:increase{{model="m",version="4",{logits}}}', 960),
        ),
        recorded(
            'modelcanary:shadow_agreeing_pairs:total{version="5"}',
            (f'modelcanary:shadow_agreeing_pairs:total{{model="m",version="5",{logits}}}', 1440),
        ),
    ]
    run_rule_tests(tmp_path, PROFILE, series, alerts, "2m", checks)


def test_numeric_answers_outside_tolerance_roll_back_and_a_classifier_is_not_judged_so(
    tmp_path: Path,
) -> None:
    series = [
        *pairs("4", 16, 0, kind="numeric"),  # every prediction moved
        *pairs("5", 16, 14, kind="numeric"),  # 12.5% outside
        *pairs("3", 20, 19, kind="numeric"),  # exactly 5% outside: quiet
        *pairs("2", 16, 16, kind="numeric"),  # retrained-alike: all within
        *pairs("6", 1, 0, kind="numeric"),  # 60 pairs in the window, fewer than 100
        *pairs("7", 16, 14),  # classification, 12.5% disagreeing: the agreement alert's
    ]
    expected = [outside_tolerance("4", "0%"), outside_tolerance("5", "87.5%")]
    alerts = {"ModelVersionNumericOutsideTolerance": expected}
    run_rule_tests(tmp_path, PROFILE, series, alerts, "2m")


def test_confidence_shift_is_the_canarys_mean_minus_stables(tmp_path: Path) -> None:
    series = [*pairs("4", 16, 16), *confidence("4", stable=14, canary=10)]
    shift = 'modelcanary:shadow_confidence_shift{model="m",version="4",output="logits"}'
    checks = [recorded("modelcanary:shadow_confidence_shift", (shift, -0.25))]
    run_rule_tests(tmp_path, PROFILE, series, {}, "2m", checks)


def test_input_drift_warns_above_its_threshold_on_enough_samples(tmp_path: Path) -> None:
    series = [
        *drift("4", 0.5, 300),  # drifted, on enough samples
        *drift("5", 0.25, 300),  # exactly at the threshold: quiet
        *drift("3", 0.5, 100),  # too few samples to judge
    ]
    alerts = {"ModelInputDrift": [input_drift("4", "0.50")]}
    max_psi = 'modelcanary:shadow_input_drift:max_psi{model="m",version="4"}'
    checks = [recorded('modelcanary:shadow_input_drift:max_psi{version="4"}', (max_psi, 0.5))]
    run_rule_tests(tmp_path, PROFILE, series, alerts, "2m", checks)
