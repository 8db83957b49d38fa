"""The shadow comparator's pure parts: OIP bodies as arrays, pairs by output kind, the
bounded drift window, the worst-feature gauges, and the bounded queue that drops."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from modelcanary.modelrepo.drift import profile_inputs
from modelcanary.modelrepo.oip import infer_body
from modelcanary.modelrepo.output_comparison import samples_within
from modelcanary.shadow.live_comparison import Comparator, Mirrored, ShadowTarget
from modelcanary.shadow.metrics import WORST_FEATURES, ShadowMetrics
from modelcanary.shadow.pairs import (
    DriftWindow,
    Incomparable,
    Tolerance,
    VersionPair,
    compare_answers,
)
from modelcanary.shadow.payload import Unparseable, tensors
from modelcanary.shadow.settings import ShadowSettings

CLASSIFY = VersionPair({"logits": "classification"}, 1e-3, 1e-2, None)
TOL = Tolerance(1e-3, 1e-2)


def answer(outputs: dict[str, np.ndarray]) -> bytes:
    return json.dumps({"outputs": infer_body(outputs)["inputs"]}).encode()


def test_tensors_reads_flat_and_nested_data() -> None:
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                {"name": "y", "shape": [2, 1], "datatype": "INT64", "data": [[1], [2]]},
            ]
        }
    ).encode()
    found = tensors(body, {}, "inputs")
    assert found["x"].dtype == np.float32 and found["x"].tolist() == [[1, 2], [3, 4]]
    assert found["y"].dtype == np.int64 and found["y"].shape == (2, 1)


# a table: one case per line, read across
# fmt: off
REFUSED_TENSORS = [
    (b"{not json", {}, "not JSON"),
    (b"[1, 2]", {}, "no 'inputs' list"),
    (b'{"inputs": []}', {}, "no 'inputs' list"),
    (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', {}, "has no name"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}', {},
     "datatype 'BYTES' is not compared"),
    (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}', {},
     "is not a list of sizes"),
    (b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32"}]}', {}, "has no data"),
    (b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}', {},
     "do not fit shape [3]"),
    (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], 2]}]}', {},
     "do not fit shape [2]"),
    (b"{}", {"inference-header-content-length": "2"}, "binary tensor extension"),
]
# fmt: on


@pytest.mark.parametrize(("body", "headers", "reason"), REFUSED_TENSORS)
def test_tensors_refuses_what_it_cannot_compare(
    body: bytes, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Unparseable, match=reason.replace("[", r"\[").replace("]", r"\]")):
        tensors(body, headers, "inputs")


def logits(classes: list[int], confidence: float = 0.9) -> np.ndarray:
    """Probabilities with `confidence` on each row's class."""
    rows = np.full((len(classes), 4), (1 - confidence) / 3)
    rows[np.arange(len(classes)), classes] = confidence
    return rows


@pytest.mark.parametrize(
    ("stable", "canary", "agreeing"),
    [
        ([0, 1, 2, 3], [0, 1, 2, 3], 4),
        ([0, 1, 2, 3], [1, 2, 3, 0], 0),  # labels shifted by one
        ([0, 1, 2, 3], [0, 1, 3, 3], 3),
    ],
)
def test_classification_pairs_count_top1_agreement(
    stable: list[int], canary: list[int], agreeing: int
) -> None:
    [pairs] = compare_answers(
        {"logits": logits(stable)}, {"logits": logits(canary, 0.7)}, CLASSIFY, TOL
    )
    assert (pairs.kind, pairs.pairs, pairs.agreeing) == ("classification", 4, agreeing)
    assert pairs.confidence_stable == pytest.approx(3.6)
    assert pairs.confidence_canary == pytest.approx(2.8)


def test_numeric_pairs_agree_when_every_element_is_within_tolerance() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    b = a + np.array([[0.0, 0.0], [0.0, 0.5], [1e-4, 1e-4]])
    versions = VersionPair({}, 1.0, 1.0, None)  # undeclared: numeric
    [pairs] = compare_answers({"y": a}, {"y": b}, versions, Tolerance(1e-3, 1e-2))
    assert (pairs.kind, pairs.pairs, pairs.agreeing) == ("numeric", 3, 2)
    assert samples_within("y", np.zeros((0, 2)), np.zeros((0, 2)), 1e-3, 1e-2) == 0


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        ({"other": logits([0])}, "the canary's answer has no output 'logits'"),
        ({"logits": logits([0, 1])}, "version A gives shape"),
        ({"logits": np.ones((1, 1))}, "version A gives shape"),
    ],
)
def test_answers_that_do_not_fit_are_incomparable(
    canary: dict[str, np.ndarray], reason: str
) -> None:
    with pytest.raises(Incomparable, match=reason):
        compare_answers({"logits": logits([0])}, canary, CLASSIFY, TOL)


def reference(seed: int = 1, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((400, 3)) + shift


def test_drift_window_scores_every_so_many_samples_over_the_last_few() -> None:
    window = DriftWindow(profile_inputs({"x": reference()}), size=100, every=50)
    live = reference(2)
    assert window.add({"x": live[:40]}) is None
    report = window.add({"x": live[40:60]})
    assert report is not None and report.samples == 60
    for start in range(60, 400, 20):
        report = window.add({"x": live[start : start + 20]}) or report
    assert window.samples <= 100 + 20  # the oldest batches leave the window
    assert report.samples == window.samples
    assert max(f.psi for f in report.features) < 0.5  # same distribution
    shifted = reference(3, shift=2.0)
    for start in range(0, 200, 20):
        report = window.add({"x": shifted[start : start + 20]}) or report
    assert max(f.psi for f in report.features) > 1.0


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ({"y": np.ones((2, 3))}, "no input 'x' of the reference profile"),
        ({"x": np.ones((2, 4))}, "4 elements per sample; the profile has 3"),
        ({"x": np.ones((0, 3))}, "no batch of samples"),
        ({"x": np.float32(1)}, "no batch of samples"),
    ],
)
def test_drift_window_refuses_inputs_that_do_not_fit(
    inputs: dict[str, np.ndarray], reason: str
) -> None:
    window = DriftWindow(profile_inputs({"x": reference()}), size=100, every=1)
    with pytest.raises(Incomparable, match=reason):
        window.add(inputs)
    assert window.samples == 0


def gauge_features(registry: CollectorRegistry) -> set[str]:
    return {
        s.labels["feature"]
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "modelcanary_shadow_input_drift_psi"
    }


def test_only_the_worst_features_are_named_and_replaced() -> None:
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    profile = profile_inputs({"x": np.random.default_rng(1).standard_normal((400, 8))})
    window = DriftWindow(profile, size=200, every=200)
    live = np.random.default_rng(2).standard_normal((200, 8))
    live[:, 5] += 3.0
    report = window.add({"x": live})
    assert report is not None
    metrics.drifted("m", "2", report)
    named = gauge_features(registry)
    assert len(named) == WORST_FEATURES and "x[5]" in named
    live = np.random.default_rng(3).standard_normal((200, 8))
    live[:, 1] += 3.0
    report = window.add({"x": live})
    assert report is not None
    metrics.drifted("m", "2", report)
    assert "x[1]" in gauge_features(registry) and len(gauge_features(registry)) == WORST_FEATURES
    metrics.forget("m", "2")
    assert gauge_features(registry) == set()


def test_a_new_comparison_starts_its_counters_at_zero() -> None:
    registry = CollectorRegistry()
    ShadowMetrics(registry).started("m", "2", {"logits": "classification", "y": "numeric"})
    samples = {
        (s.name, tuple(sorted(s.labels.items())))
        for metric in registry.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.value == 0
    }
    assert len(samples) == 4 + 2 + 2 + 2  # drop reasons, pairs, agreeing, confidence sides
    assert (
        "modelcanary_shadow_agreeing_pairs_total",
        (("kind", "classification"), ("model", "m"), ("output", "logits"), ("version", "2")),
    ) in samples


def sample_value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return sum(
        s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def comparator(queue: int, percent: float = 100) -> tuple[Comparator, CollectorRegistry]:
    registry = CollectorRegistry()
    draws = iter([0.05, 0.5, 0.95] * 10)
    found = Comparator(ShadowSettings(queue=queue), ShadowMetrics(registry), lambda: next(draws))
    found.targets["m"] = ShadowTarget(
        "m", "1", "2", percent, "http://127.0.0.1:1", CLASSIFY, TOL, None
    )
    return found, registry


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    found, registry = comparator(queue=2)
    for _ in range(5):
        found.offer("m", "1", b"{}", {}, b"{}", [])
    assert found.queue.qsize() == 2
    dropped = sample_value(registry, "modelcanary_shadow_dropped_total", reason="queue_full")
    assert dropped == 3


def test_only_the_share_of_stable_requests_is_mirrored() -> None:
    found, _ = comparator(queue=10, percent=50)
    for version in ("1", "1", "1", "2", "1"):  # draws 0.05, 0.5, 0.95, (none), 0.05
        found.offer("m", version, b"{}", {}, b"{}", [])
    found.offer("other", "1", b"{}", {}, b"{}", [])  # not compared
    assert found.queue.qsize() == 2


def test_unparseable_payloads_are_dropped_before_any_request() -> None:
    found, _ = comparator(queue=1)
    target = found.targets["m"]
    good = json.dumps(infer_body({"x": np.ones((1, 2), np.float32)})).encode()
    for body, stable_answer in ((b"garbage", answer({"logits": logits([0])})), (good, b"[]")):
        item = Mirrored(target, body, {}, stable_answer, {})
        assert asyncio.run(found.compare(item)) == "unparseable"
