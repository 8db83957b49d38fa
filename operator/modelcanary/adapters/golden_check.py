"""The golden-sample check before the first step: no user traffic reaches a canary whose
answers differ from what PyTorch said at export time.

The canary version's `golden.npz` inputs (read through a repository reader and checked
against its manifest) are sent to the serving endpoint pinned to that version, and every
output is compared with the stored PyTorch outputs within the export's tolerance.
"""

from __future__ import annotations

import io

import httpx
import numpy as np

from modelcanary.adapters.repo_reader import (
    CheckUnavailable,
    RepositoryReader,
    pinned_file,
    version_manifest,
)
from modelcanary.adapters.served_version import served_answers
from modelcanary.errors import one_line
from modelcanary.modelrepo.golden import output_parity, split_golden
from modelcanary.modelrepo.manifest import GOLDEN
from modelcanary.rollout.ports import GoldenResult


def run_golden_check(
    url: str,
    reader: RepositoryReader,
    model: str,
    version: str,
    client: httpx.Client | None = None,
) -> GoldenResult:
    """Compare the served version's answers with its golden outputs."""
    try:
        manifest = version_manifest(reader, model, version)
        with np.load(io.BytesIO(pinned_file(reader, manifest, GOLDEN)), allow_pickle=False) as f:
            inputs, expected = split_golden({k: f[k] for k in f.files})
    except CheckUnavailable as exc:
        raise CheckUnavailable(f"no golden samples for {model}:{version}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise CheckUnavailable(
            f"no golden samples for {model}:{version}: {one_line(exc)}"
        ) from None
    count = next(iter(inputs.values())).shape[0]
    http = client or httpx.Client(timeout=10.0)
    answers = served_answers(
        http, url, model, version, inputs, manifest.max_batch_size, expected, "golden-check"
    )
    worst = None
    for name, want in expected.items():
        got = answers[name]
        if got.size != want.size:
            return GoldenResult(
                False, f"output {name!r} has {got.size} values, expected {want.size}"
            )
        batch = manifest.max_batch_size or 1
        result = output_parity(
            name, batch, got.reshape(want.shape), want, manifest.atol, manifest.rtol
        )
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
