"""`modelcanary repo list|verify`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modelcanary.commands.arguments import Commands, Parser
from modelcanary.errors import UsageError


def add(commands: Commands) -> None:
    p = commands.add_parser("repo", help="inspect and verify a model repository")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
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
    from modelcanary.modelrepo.inventory import inventory, render_json, render_table
    from modelcanary.modelrepo.repository import ModelRepository

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
    from modelcanary.modelrepo.repository import ModelRepository
    from modelcanary.modelrepo.verify import select, verify_version

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
