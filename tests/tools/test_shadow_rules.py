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


def pairs(version: str, per_second: int, agreeing: int, kind: str = "classification") -> list[
    dict[str, str]
]:  # fmt: skip
    labels = f'model="m",version="{version}",output="logits",kind="{kind}"'
    return [
        {"series": f"modelcanary_shadow_pairs_total{{{labels}}}", "values": f"0+{per_second}x{STEPS}"},
        {"series": f"modelcanary_shadow_agreeing_pairs_total{{{labels}}}",
         "values": f"0+{agreeing}x{STEPS}"},
    ]  # fmt: skip


def confidence(version: str, stable: float, canary: float) -> list[dict[str, str]]:
    labels = f'model="m",version="{version}",output="logits"'
    return [
        {"series": f'modelcanary_shadow_confidence_total{{{labels},side="{side}"}}',
         "values": f"0+{per_second}x{STEPS}"}
        for side, per_second in (("stable", stable), ("canary", canary))
    ]  # fmt: skip


def drift(version: str, psi: float, samples: int) -> list[dict[str, str]]:
    return [
        {"series": f'modelcanary_shadow_input_drift_psi{{model="m",version="{version}",feature="pixels[3]"}}',
         "values": f"{psi}x{STEPS}"},
        {"series": f'modelcanary_shadow_input_drift_psi{{model="m",version="{version}",feature="pixels[9]"}}',
         "values": f"{psi / 2}x{STEPS}"},
        {"series": f'modelcanary_shadow_input_drift_samples{{model="m",version="{version}"}}',
         "values": f"{samples}x{STEPS}"},
    ]  # fmt: skip


def low_agreement(version: str, value: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "critical", "model": "m", "version": version,
                       "output": "logits", "kind": "classification"},
        "exp_annotations": {
            "summary": f"Canary m version {version} agrees with stable on only {value} of answers",
            "description": f"The top-1 answers of canary m version {version} (output logits) "
            f"agree with the stable version's on only {value} of the samples compared in shadow "
            "over the last 1m; the minimum is 88%.",
            "runbook_url": f"{RUNBOOK}#modelversionlowagreement",
        },
    }  # fmt: skip


def outside_tolerance(version: str, value: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "critical", "model": "m", "version": version,
                       "output": "logits", "kind": "numeric"},
        "exp_annotations": {
            "summary": f"Canary m version {version} answers within tolerance of stable on only "
            f"{value} of samples",
            "description": f"The numeric answers of canary m version {version} (output logits) "
            "are within the shadow tolerance of the stable version's on only "
            f"{value} of the samples compared over the last 1m; at most 5% may be outside.",
            "runbook_url": f"{RUNBOOK}#modelversionnumericoutsidetolerance",
        },
    }  # fmt: skip


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
    recorded = [
        {
            "expr": 'modelcanary:shadow_agreement:ratio{version=~"[2-5]"}',
            "eval_time": "2m",
            "exp_samples": [
                {"labels": 'modelcanary:shadow_agreement:ratio{model="m",version="'
                           f'{v}",output="logits",kind="classification"}}', "value": value}
                for v, value in (("2", 0.9375), ("3", 0.875), ("4", 0), ("5", 0.75))
            ],
        },
        {
            "expr": 'modelcanary:shadow_pairs:increase{version="4"}',
            "eval_time": "2m",
            "exp_samples": [{"labels": 'modelcanary:shadow_pairs:increase{model="m",version="4",'
                                       'output="logits",kind="classification"}', "value": 960}],
        },
        {
            "expr": 'modelcanary:shadow_agreeing_pairs:total{version="5"}',
            "eval_time": "2m",
            "exp_samples": [{"labels": 'modelcanary:shadow_agreeing_pairs:total{model="m",'
                                       'version="5",output="logits",kind="classification"}',
                             "value": 1440}],
        },
    ]  # fmt: skip
    run_rule_tests(tmp_path, PROFILE, series, alerts, "2m", recorded)


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
    alerts = {
        "ModelVersionNumericOutsideTolerance": [
            outside_tolerance("4", "0%"), outside_tolerance("5", "87.5%"),
        ]
    }  # fmt: skip
    run_rule_tests(tmp_path, PROFILE, series, alerts, "2m")


def test_confidence_shift_is_the_canarys_mean_minus_stables(tmp_path: Path) -> None:
    series = [*pairs("4", 16, 16), *confidence("4", stable=14, canary=10)]
    recorded = [
        {
            "expr": "modelcanary:shadow_confidence_shift",
            "eval_time": "2m",
            "exp_samples": [
                {"labels": 'modelcanary:shadow_confidence_shift{model="m",version="4",'
                           'output="logits"}', "value": -0.25}
            ],
        }
    ]  # fmt: skip
    run_rule_tests(tmp_path, PROFILE, series, {}, "2m", recorded)


def test_input_drift_warns_above_its_threshold_on_enough_samples(tmp_path: Path) -> None:
    series = [
        *drift("4", 0.5, 300),  # drifted, on enough samples
        *drift("5", 0.25, 300),  # exactly at the threshold: quiet
        *drift("3", 0.5, 100),  # too few samples to judge
    ]
    alerts = {"ModelInputDrift": [input_drift("4", "0.50")]}
    recorded = [
        {
            "expr": 'modelcanary:shadow_input_drift:max_psi{version="4"}',
            "eval_time": "2m",
            "exp_samples": [
                {"labels": 'modelcanary:shadow_input_drift:max_psi{model="m",version="4"}',
                 "value": 0.5}
            ],
        }
    ]  # fmt: skip
    run_rule_tests(tmp_path, PROFILE, series, alerts, "2m", recorded)
