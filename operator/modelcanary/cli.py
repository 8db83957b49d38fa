"""The `modelcanary` command line.

Exit codes: 0 success, 1 a check failed (parity, checksum, golden samples), 2 bad input.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from modelcanary import __version__
from modelcanary.errors import ModelcanaryError, UsageError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _say(line: str) -> None:
    """Progress on stdout, flushed so that piped logs show it as it happens."""
    print(line, flush=True)


def _add_export(commands: argparse._SubParsersAction[_Parser]) -> None:
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
    p.add_argument("--version", type=_integer, help="version number (default: the next)")
    p.add_argument(
        "--max-batch-size",
        type=_integer,
        default=8,
        help="largest batch Triton may form; 0 disables batching (default 8)",
    )
    p.add_argument(
        "--dynamic-batching", action="store_true", help="let Triton combine requests into batches"
    )
    p.add_argument(
        "--preferred-batch-size",
        type=_int_list,
        default=(),
        metavar="N,...",
        help="batch sizes the dynamic batcher aims for",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=_integer,
        metavar="N",
        help="longest a request waits for a batch to fill, in microseconds",
    )
    p.add_argument(
        "--instances",
        type=_integer,
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
        type=_integer,
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
    p.add_argument("--atol", type=_float, default=1e-4, help="absolute tolerance (default 1e-4)")
    p.add_argument("--rtol", type=_float, default=1e-3, help="relative tolerance (default 1e-3)")
    p.add_argument("--opset", type=_integer, default=18, help="ONNX opset (default 18)")
    p.add_argument(
        "--label",
        dest="labels",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="free-form fact recorded in the manifest",
    )
    p.add_argument("--force", action="store_true", help="replace an existing version")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from modelcanary.exporter import ExportRequest, export
    from modelcanary.model_config import ServingOptions
    from modelcanary.tensorspec import parse_input_spec

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
        labels=dict(args.labels),
        force=args.force,
    )
    result = export(request, say=_say)
    print(f"exported {result.name}:{result.version}  {result.signature.describe()}")
    return 0


def _add_repo(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("repo", help="inspect and verify a model repository")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    listing = verbs.add_parser("list", help="models, versions, signatures and export facts")
    listing.add_argument("--repo", type=Path, default=Path("model_repo"))
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    listing.set_defaults(handler=_run_repo_list)
    verify = verbs.add_parser(
        "verify", help="re-check sha256 of every file and re-run the golden samples"
    )
    verify.add_argument("--repo", type=Path, default=Path("model_repo"))
    verify.add_argument("target", nargs="?", metavar="NAME[:VERSION]")
    verify.set_defaults(handler=_run_repo_verify)


def _run_repo_list(args: argparse.Namespace) -> int:
    from modelcanary.inventory import inventory, render_json, render_table
    from modelcanary.repository import ModelRepository

    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    rows = inventory(ModelRepository(args.repo))
    if args.output == "json":
        print(json.dumps(render_json(rows), indent=2))
    elif rows:
        print(render_table(rows))
    else:
        print(f"{args.repo}: no models")
    return 0


def _run_repo_verify(args: argparse.Namespace) -> int:
    from modelcanary.repository import ModelRepository
    from modelcanary.verify import select, verify_version

    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    repo = ModelRepository(args.repo)
    checks = [verify_version(repo, name, version) for name, version in select(repo, args.target)]
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"{len(failed)} of {len(checks)} versions failed verification", file=sys.stderr)
        return 1
    return 0


def _add_examples(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("examples", help="build the example model repository")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    build = verbs.add_parser(
        "build", help="train the digits classifier and export versions 1 and 2"
    )
    build.add_argument("--repo", type=Path, default=Path("model_repo"))
    build.add_argument("--force", action="store_true", help="retrain and replace both versions")
    build.set_defaults(handler=_run_examples_build)


def _run_examples_build(args: argparse.Namespace) -> int:
    from modelcanary.examples import digits

    digits.build(args.repo, force=args.force, say=_say)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modelcanary", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--version", action="version", version=f"modelcanary {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    _add_export(commands)
    _add_repo(commands)
    _add_examples(commands)
    return parser


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM takes the same path as Ctrl-C, so a terminated export rolls back too."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return handler(args)
    except ModelcanaryError as exc:
        print(f"modelcanary {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"modelcanary {args.command}: interrupted; nothing was changed", file=sys.stderr)
        return 130
