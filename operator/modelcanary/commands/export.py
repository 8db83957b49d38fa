"""`modelcanary export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelcanary.commands.arguments import Commands, int_list, integer, label, number, say


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "export",
        help="export a PyTorch model to a verified Triton model repository version",
        description="Export a PyTorch model to ONNX, check it against PyTorch on golden "
        "samples, and publish it as a new version of a Triton model repository.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="PKG.MODULE:CALLABLE",
        help="callable returning a torch.nn.Module",
    )
    p.add_argument(
        "--weights", type=Path, metavar="STATE_DICT.pt", help="state dict to load into the module"
    )
    p.add_argument("--name", required=True, help="model name in the repository")
    p.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        required=True,
        metavar="NAME:DTYPE:DIMS",
        help="an input, per sample without the batch axis, -1 for a variable dim "
        "(e.g. INPUT__0:fp32:64, IMAGE:fp32:1x8x8); repeat in order",
    )
    p.add_argument(
        "--output",
        dest="outputs",
        action="append",
        default=[],
        metavar="NAME",
        help="name of an output, in order (default OUTPUT__0, OUTPUT__1, ...)",
    )
    p.add_argument("--version", type=integer, help="version number (default: the next)")
    p.add_argument(
        "--max-batch-size",
        type=integer,
        default=8,
        help="largest batch Triton may form; 0 disables batching (default 8)",
    )
    p.add_argument(
        "--dynamic-batching", action="store_true", help="let Triton combine requests into batches"
    )
    p.add_argument(
        "--preferred-batch-size",
        type=int_list,
        default=(),
        metavar="N,...",
        help="batch sizes the dynamic batcher aims for",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=integer,
        metavar="N",
        help="longest a request waits for a batch to fill, in microseconds",
    )
    p.add_argument(
        "--instances",
        type=integer,
        metavar="N",
        help="model instances per device (default: Triton's choice)",
    )
    p.add_argument("--kind", default="cpu", help="cpu or gpu (default cpu)")
    p.add_argument(
        "--accelerator",
        metavar="tensorrt[:fp16]",
        help="ONNX Runtime TensorRT execution accelerator on GPU",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=Path("model_repo"),
        help="model repository directory (default model_repo)",
    )
    p.add_argument(
        "--golden-samples",
        type=integer,
        default=32,
        metavar="N",
        help="sample inputs kept with PyTorch's outputs for checks (default 32)",
    )
    p.add_argument(
        "--samples",
        type=Path,
        metavar="FILE.npz",
        help="real sample inputs keyed by input name (default: random, seeded)",
    )
    p.add_argument(
        "--labels",
        dest="holdout_labels",
        metavar="KEY",
        help="array of labels in --samples: all its samples become the labelled holdout",
    )
    p.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        default=[],
        metavar="OUTPUT=METRIC",
        help="metric of an output on the holdout: accuracy, top-k:K, mae or rmse; repeatable",
    )
    p.add_argument(
        "--output-kind",
        dest="output_kinds",
        action="append",
        default=[],
        metavar="OUTPUT=KIND",
        help="how versions' answers are compared: classification or numeric (default); repeatable",
    )
    p.add_argument(
        "--quantize",
        metavar="int8",
        help="publish the ONNX Runtime dynamically quantized graph, if it agrees with fp32",
    )
    p.add_argument(
        "--quantize-min-agreement",
        type=number,
        default=0.99,
        metavar="F",
        help="least top-1 agreement (classification) or share within --quantize-atol/rtol "
        "(numeric) of the int8 graph with fp32 (default 0.99)",
    )
    p.add_argument(
        "--quantize-atol", type=number, default=0.1, help="int8 tolerance, absolute (default 0.1)"
    )
    p.add_argument(
        "--quantize-rtol", type=number, default=0.05, help="int8 tolerance, relative (default 0.05)"
    )
    p.add_argument(
        "--quantize-margin",
        type=number,
        default=0.01,
        help="largest loss of a holdout metric, int8 against fp32 (default 0.01)",
    )
    p.add_argument("--atol", type=number, default=1e-4, help="absolute tolerance (default 1e-4)")
    p.add_argument("--rtol", type=number, default=1e-3, help="relative tolerance (default 1e-3)")
    p.add_argument("--opset", type=integer, default=18, help="ONNX opset (default 18)")
    p.add_argument(
        "--seed",
        type=integer,
        default=None,
        metavar="N",
        help="seed Python's, numpy's and torch's generators before calling the model factory "
        "(recorded in the manifest; two exports with the same seed are byte-identical)",
    )
    p.add_argument(
        "--label",
        dest="labels",
        type=label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="free-form fact recorded in the manifest",
    )
    p.add_argument("--force", action="store_true", help="replace an existing version")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.modelrepo.exporter import ExportRequest, export
    from modelcanary.modelrepo.holdout_store import parse_declarations
    from modelcanary.modelrepo.model_config import ServingOptions
    from modelcanary.modelrepo.quantize import QuantizeLimits
    from modelcanary.modelrepo.tensorspec import parse_input_spec

    request = ExportRequest(
        model=args.model,
        name=args.name,
        inputs=tuple(parse_input_spec(text) for text in args.inputs),
        output_names=tuple(args.outputs),
        weights=args.weights,
        version=args.version,
        options=ServingOptions(
            max_batch_size=args.max_batch_size,
            dynamic_batching=args.dynamic_batching,
            preferred_batch_sizes=args.preferred_batch_size,
            max_queue_delay_us=args.max_queue_delay_us,
            instances=args.instances,
            kind=args.kind,
            accelerator=args.accelerator,
        ),
        repo=args.repo,
        golden_samples=args.golden_samples,
        samples_file=args.samples,
        atol=args.atol,
        rtol=args.rtol,
        opset=args.opset,
        seed=args.seed,
        labels=dict(args.labels),
        declarations=parse_declarations(args.output_kinds, args.holdout_labels, args.metrics),
        quantize=args.quantize,
        quantize_limits=QuantizeLimits(
            min_agreement=args.quantize_min_agreement,
            atol=args.quantize_atol,
            rtol=args.quantize_rtol,
            margin=args.quantize_margin,
        ),
        force=args.force,
    )
    result = export(request, say=say)
    print(f"exported {result.name}:{result.version}  {result.signature.describe()}")
    return 0
