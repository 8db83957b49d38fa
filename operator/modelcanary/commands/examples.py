"""`modelcanary examples build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelcanary.commands.arguments import Commands, Parser, say


def add(commands: Commands) -> None:
    p = commands.add_parser("examples", help="build the example model repository")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    build = verbs.add_parser("build", help="train the digits classifier and export versions 1 to 5")
    build.add_argument("--repo", type=Path, default=Path("model_repo"))
    build.add_argument("--force", action="store_true", help="retrain and replace every version")
    build.set_defaults(handler=_run_examples_build)


def _run_examples_build(args: argparse.Namespace) -> int:
    from modelcanary.examples import digits

    digits.build(args.repo, force=args.force, say=say)
    return 0
