"""`modelcanary triton install|where`: the local Triton server from PyPI."""

from __future__ import annotations

import argparse

from modelcanary.commands.arguments import Commands, Parser, say


def add(commands: Commands) -> None:
    p = commands.add_parser("triton", help="install or locate the local Triton server")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    install = verbs.add_parser(
        "install", help="extract tritonserver 2.51 from the nvidia-pytriton wheel (idempotent)"
    )
    install.set_defaults(handler=run_install)
    where = verbs.add_parser("where", help="print where Triton is installed, and whether it is")
    where.set_defaults(handler=run_where)


def run_install(args: argparse.Namespace) -> int:
    from modelcanary.serving.triton_home import TritonHome, install

    home = TritonHome.default()
    if not install(home, say=say):
        say(f"Triton is already installed in {home.root}")
    return 0


def run_where(args: argparse.Namespace) -> int:
    from modelcanary.serving.triton_home import TritonHome

    home = TritonHome.default()
    state = "installed" if home.is_installed() else "not installed"
    print(f"{home.root} ({state})")
    return 0 if home.is_installed() else 1
