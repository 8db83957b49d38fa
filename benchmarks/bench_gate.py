"""What the checks before traffic add to a rollout's start: the golden-sample check and
the holdout gate, on the example model's holdout (360 samples) and on one of 10,000.

Run with `make bench`. Starts a real Triton (digits 1, 2 and 5) behind the gateway, as
`modelcanary up` does, and times, five times each: the golden-sample check of the canary
(32 samples) and the holdout gate for 1 -> 2 (an honest improvement: "not worse") and
2 -> 5 (classes 3 and 8 swapped: "worse"). The 10,000-sample holdout is the example's 360
digits repeated with pixel noise (5% of the pixels' standard deviation), pinned in the
manifests like an exported one. Prints a table and writes benchmarks/results/gate.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from modelcanary.adapters.golden_check import run_golden_check
from modelcanary.adapters.holdout_gate import run_holdout_gate
from modelcanary.adapters.repo_reader import LocalRepository
from modelcanary.examples import digits
from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from modelcanary.modelrepo.holdout_store import HOLDOUT, holdout_bytes, read_holdout
from modelcanary.modelrepo.manifest import MANIFEST, sha256_bytes
from modelcanary.rollout.ports import GateResult
from modelcanary.serving.triton_home import TritonHome
from modelcanary.serving.triton_server import TritonServer
from modelcanary.tables import format_table

RUNS = 5
LARGE = 10_000
PAIRS = (("1", "2"), ("2", "5"))
RESULTS = Path(__file__).parent / "results" / "gate.json"
NOISE = 0.05  # of the pixels' standard deviation: new samples, the same digits
T = TypeVar("T")


def enlarge_holdouts(repo: Path, versions: tuple[str, ...], size: int) -> None:
    """Replace the versions' holdouts with one of `size` samples, re-pinned in the manifests."""
    inputs, labels = read_holdout(repo / "digits" / versions[0] / HOLDOUT)
    rng = np.random.default_rng(0)
    picks = np.arange(size) % len(labels)
    bigger = {
        name: (array[picks] + rng.normal(0, NOISE * array.std(), array[picks].shape)).astype(
            array.dtype
        )
        for name, array in inputs.items()
    }
    data = holdout_bytes(bigger, labels[picks])
    for version in versions:
        directory = repo / "digits" / version
        (directory / HOLDOUT).write_bytes(data)
        manifest = json.loads((directory / MANIFEST).read_text())
        manifest["files"][f"{version}/{HOLDOUT}"] = sha256_bytes(data)
        manifest["holdout"]["samples"] = size
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def timed(call: Callable[[], T], runs: int) -> tuple[list[float], T]:
    """Seconds per call, and the last call's result."""
    times = []
    for _ in range(runs - 1):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    began = time.perf_counter()
    result = call()
    times.append(time.perf_counter() - began)
    return times, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repo"))
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    digits.build(args.repo, say=lambda line: None)
    home = TritonHome.default()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-gate-") as work:
        repos = {360: Path(work) / "small", LARGE: Path(work) / "large"}
        for repo in repos.values():
            shutil.copytree(args.repo, repo)
        enlarge_holdouts(repos[LARGE], ("1", "2", "5"), LARGE)
        with TritonServer(repos[360], Path(work) / "run", home) as triton:
            endpoints = triton.start()
            triton.load("digits", [1, 2, 5])
            upstreams = {v: endpoints.http for v in ("1", "2", "5")}
            config = parse_config(
                {"models": {"digits": {"stable": "1", "upstreams": upstreams}}}, "bench"
            )
            gateway = GatewayServer(Gateway(config, "bench"))
            url = gateway.start()
            try:
                for size, repo in repos.items():
                    reader = LocalRepository(repo)
                    golden, _ = timed(
                        partial(run_golden_check, url, reader, "digits", "2"), args.runs
                    )
                    for stable, canary in PAIRS:
                        gate = partial(
                            run_holdout_gate,
                            (url, url),
                            reader,
                            "digits",
                            (stable, canary),
                            0.01,
                            0.95,
                        )
                        times, result = timed(gate, args.runs)
                        rows.append(_row(size, stable, canary, result, times, golden))
                        print(
                            f"{size} samples, {stable} -> {canary}: {rows[-1]['outcome']}, "
                            f"median {rows[-1]['gate_median_s']} s"
                        )
            finally:
                gateway.stop()
    # a table: each row's cells in the header's order
    # fmt: off
    table = [["holdout", "rollout", "gate", "canary", "stable", "golden check s", "gate median s",
              "gate worst s"]]
    for r in rows:
        table.append([str(r["samples"]), str(r["rollout"]), str(r["outcome"]),
                      f"{r['canary']:.4f}", f"{r['stable']:.4f}", f"{r['golden_median_s']:.3f}",
                      f"{r['gate_median_s']:.3f}", f"{r['gate_worst_s']:.3f}"])
    # fmt: on
    print(format_table(table))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "what": "golden-sample check and holdout gate through the gateway to a real "
                "Triton (digits, max batch 32, JSON); median and worst of the runs",
                "runs": args.runs,
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    expected = {"1 -> 2": "not worse", "2 -> 5": "worse"}
    return 0 if all(r["outcome"] == expected[str(r["rollout"])] for r in rows) else 1


def _row(
    size: int, stable: str, canary: str, result: GateResult, times: list[float], golden: list[float]
) -> dict[str, object]:
    return {
        "samples": size,
        "rollout": f"{stable} -> {canary}",
        "outcome": result.outcome,
        "canary": float(result.numbers["holdout_canary"]),
        "stable": float(result.numbers["holdout_stable"]),
        "golden_median_s": round(statistics.median(golden), 4),
        "gate_median_s": round(statistics.median(times), 4),
        "gate_worst_s": round(max(times), 4),
    }


if __name__ == "__main__":
    sys.exit(main())
