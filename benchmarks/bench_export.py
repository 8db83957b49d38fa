"""Export and verification time of the example digits model.

Run with `make bench`. Prints a table and writes benchmarks/results/export.json.
Each export is a full `modelcanary export` (load, torch.export, onnx.checker, parity at
three batch sizes, atomic publication); each verify is `repo verify` of one version
(sha256 of every file and the golden samples through ONNX Runtime).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from modelcanary.examples import digits
from modelcanary.modelrepo.exporter import ExportRequest, export
from modelcanary.modelrepo.model_config import ServingOptions
from modelcanary.modelrepo.repository import ModelRepository
from modelcanary.modelrepo.tensorspec import parse_input_spec
from modelcanary.modelrepo.verify import verify_version
from modelcanary.tables import format_table

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
RESULTS = Path(__file__).parent / "results" / "export.json"


def timed(action: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of each run."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    state, _ = digits.train(digits.RECIPES[0])
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-") as work:
        weights = Path(work) / "digits.pt"
        torch.save(state, weights)
        samples = Path(work) / "samples.npz"
        np.savez(samples, pixels=digits.dataset()[2])
        repo = Path(work) / "repo"
        counter = iter(range(1, 10_000))

        def export_once() -> object:
            request = ExportRequest(
                model=digits.FACTORY,
                name=digits.NAME,
                inputs=(parse_input_spec(digits.INPUT),),
                output_names=(digits.OUTPUT,),
                weights=weights,
                version=next(counter),
                options=ServingOptions(max_batch_size=32, dynamic_batching=True),
                repo=repo,
                golden_samples=32,
                samples_file=samples,
            )
            return export(request, say=lambda line: None)

        first = timed(export_once, 1)  # includes the exporter's one-time imports
        exports = timed(export_once, RUNS)
        store = ModelRepository(repo)

        def verify_once() -> object:
            check = verify_version(store, digits.NAME, 1)
            assert check.ok, check.problems
            return check

        verifies = timed(verify_once, RUNS)
        model_kib = (repo / digits.NAME / "1" / "model.onnx").stat().st_size / 1024

    rows = [
        ("case", "runs", "median s", "min s", "max s"),
        ("export digits (first in process)", "1", f"{first[0]:.3f}", "-", "-"),
        row("export digits (warm)", exports),
        row("repo verify digits:1", verifies),
    ]
    print(format_table(rows))
    print(f"model.onnx {model_kib:.1f} KiB; 32 golden samples; parity at batch 1, 3, 32")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "export",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                },
                "export_first_s": first[0],
                "export_warm_s": exports,
                "verify_s": verifies,
                "model_kib": model_kib,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {RESULTS}")


def row(name: str, seconds: list[float]) -> tuple[str, ...]:
    return (
        name,
        str(len(seconds)),
        f"{statistics.median(seconds):.3f}",
        f"{min(seconds):.3f}",
        f"{max(seconds):.3f}",
    )


if __name__ == "__main__":
    main()
