"""The golden-sample check before the first step: no user traffic reaches a canary whose
answers differ from what PyTorch said at export time.

The canary version's `golden.npz` inputs are sent to the serving endpoint pinned to that
version (Open Inference Protocol, `/v2/models/{m}/versions/{v}/infer`, so it works on
the gateway and on a predictor alike), in batches the model accepts, and every output is
compared with the stored PyTorch outputs within the export's tolerance.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from modelcanary.errors import ModelcanaryError, one_line
from modelcanary.metrics_contract import PROBE_HEADER
from modelcanary.modelrepo.compare import compare, split_golden
from modelcanary.modelrepo.manifest import GOLDEN, MANIFEST, read_manifest
from modelcanary.modelrepo.oip import infer_body
from modelcanary.rollout.ports import GoldenResult

PROBE = {PROBE_HEADER: "golden-check"}  # the gateway does not count it as user traffic


class GoldenUnavailable(ModelcanaryError):
    """The check could not run (unreachable, not served, no golden samples): not a verdict."""


def run_golden_check(
    url: str, repo: Path, model: str, version: str, client: httpx.Client | None = None
) -> GoldenResult:
    """Compare the served version's answers with its golden outputs."""
    try:
        directory = repo / model / str(int(version))
        manifest = read_manifest(directory / MANIFEST, model, int(version))
        with np.load(directory / GOLDEN, allow_pickle=False) as data:
            inputs, expected = split_golden({k: data[k] for k in data.files})
    except (ModelcanaryError, OSError, ValueError) as exc:
        raise GoldenUnavailable(f"no golden samples for {model}:{version}: {exc}") from None
    batch = manifest.max_batch_size or 1
    count = next(iter(inputs.values())).shape[0]
    endpoint = f"{url.rstrip('/')}/v2/models/{model}/versions/{version}/infer"
    http = client or httpx.Client(timeout=10.0)
    answers: dict[str, list[np.ndarray]] = {name: [] for name in expected}
    for start in range(0, count, batch):
        chunk = {n: a[start : start + batch] for n, a in inputs.items()}
        if not manifest.max_batch_size:  # unbatched: one sample, no batch axis
            chunk = {n: a[start] for n, a in inputs.items()}
        outputs = _infer(http, endpoint, chunk)
        for name in expected:
            if name not in outputs:
                return GoldenResult(False, f"the canary returned no output {name!r}")
            answer = outputs[name] if manifest.max_batch_size else outputs[name][np.newaxis]
            answers[name].append(answer)
    worst = None
    for name, want in expected.items():
        got = np.concatenate(answers[name]).reshape(want.shape) if answers[name] else np.empty(0)
        if got.size != want.size:
            return GoldenResult(
                False, f"output {name!r} has {got.size} values, expected {want.size}"
            )
        result = compare(name, batch, got, want, manifest.atol, manifest.rtol)
        if not result.ok:
            return GoldenResult(
                False,
                f"output {name!r} off by {result.max_abs_err:.3e} (atol {manifest.atol:g}, "
                f"rtol {manifest.rtol:g}) over {count} samples",
            )
        if worst is None or result.max_abs_err > worst[1]:
            worst = (name, result.max_abs_err)
    name, error = worst or ("-", 0.0)
    return GoldenResult(True, f"{count} samples, max abs err {error:.2e} on {name!r}")


def _infer(
    http: httpx.Client, endpoint: str, chunk: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    try:
        response = http.post(endpoint, json=infer_body(chunk), headers=PROBE)
    except httpx.HTTPError as exc:
        raise GoldenUnavailable(f"{endpoint} is unreachable: {one_line(exc)}") from None
    if response.status_code != 200:
        raise GoldenUnavailable(
            f"{endpoint} answered {response.status_code}: {response.text[:200]}"
        )
    outputs = {}
    for output in response.json().get("outputs", []):
        outputs[output["name"]] = np.asarray(output["data"]).reshape(output["shape"])
    return outputs
