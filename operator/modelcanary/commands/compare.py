"""`modelcanary compare`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modelcanary.commands.arguments import Commands, integer, number
from modelcanary.errors import UsageError


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "compare",
        help="compare two versions of a model on the same samples (offline)",
        description="Run two versions with ONNX Runtime on the same samples and report how "
        "their answers differ (by each output's declared kind), each version's metric on "
        "labelled samples with the paired difference, and input drift against A's profile.",
    )
    p.add_argument("--repo", type=Path, default=Path("model_repo"))
    p.add_argument("--model", required=True, help="model name in the repository")
    p.add_argument("a", type=integer, metavar="A", help="the reference version (stable)")
    p.add_argument("b", type=integer, metavar="B", help="the version judged against A (canary)")
    # --samples, --labels and --metric as `modelcanary export` spells them, on purpose: the
    # same flags for the same files, each with this command's own help
    p.add_argument(
        "--samples",
        type=Path,
        metavar="FILE.npz",
        help="inputs keyed by input name (default: A's holdout, else A's golden samples)",
    )
    p.add_argument("--labels", metavar="KEY", help="array of labels in --samples")
    p.add_argument(
        "--on",
        choices=("holdout", "golden"),
        help="without --samples: A's labelled holdout (the default when it has one) or its "
        "golden samples",
    )
    p.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        default=[],
        metavar="OUTPUT=METRIC",
        help="metric of an output (default: the one declared at export); repeatable",
    )
    p.add_argument(
        "--atol", type=number, default=1e-3, help="numeric outputs: absolute tolerance (1e-3)"
    )
    p.add_argument(
        "--rtol", type=number, default=1e-2, help="numeric outputs: relative tolerance (1e-2)"
    )
    p.add_argument(
        "--confidence", type=number, default=0.95, help="confidence of the intervals (0.95)"
    )
    p.add_argument(
        "--margin",
        type=number,
        default=0.01,
        help="how much worse B may be, in the metric's units (0.01: one point of accuracy)",
    )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.modelrepo.holdout import Metric
    from modelcanary.modelrepo.holdout_store import parse_assignments
    from modelcanary.modelrepo.offline_comparison import (
        CompareRequest,
        compare_versions,
        render_text,
    )

    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    if args.samples is not None and args.on is not None:
        raise UsageError("--on chooses A's own samples; it cannot be combined with --samples")
    request = CompareRequest(
        repo=args.repo,
        model=args.model,
        a=args.a,
        b=args.b,
        samples_file=args.samples,
        labels_key=args.labels,
        on=args.on,
        metrics={
            name: Metric.parse(text)
            for name, text in parse_assignments(args.metrics, "--metric").items()
        },
        atol=args.atol,
        rtol=args.rtol,
        confidence=args.confidence,
        margin=args.margin,
    )
    report = compare_versions(request)
    print(json.dumps(report.to_json(), indent=2) if args.output == "json" else render_text(report))
    return 0
