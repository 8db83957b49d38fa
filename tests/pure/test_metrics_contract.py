"""The Triton backend cannot import modelcanary; its copies of shared constants must match."""

from __future__ import annotations

import ast
import itertools

from modelcanary import metrics_contract
from modelcanary.triton_backend import MODEL_PY


def backend_constant(name: str) -> object:
    tree = ast.parse(MODEL_PY.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{MODEL_PY} has no {name}")


def test_backend_latency_buckets_match_the_contract() -> None:
    assert tuple(backend_constant("LATENCY_BUCKETS")) == metrics_contract.LATENCY_BUCKETS  # type: ignore[arg-type]


def test_buckets_span_1ms_to_10s_finely() -> None:
    buckets = metrics_contract.LATENCY_BUCKETS
    assert buckets[0] == 0.001 and buckets[-1] == 10.0
    assert list(buckets) == sorted(buckets)
    assert all(b / a <= 1.5 for a, b in itertools.pairwise(buckets))  # P99 error <= 50%


def test_backend_metric_name_matches_the_contract() -> None:
    assert metrics_contract.BACKEND_LATENCY in MODEL_PY.read_text()
