"""`modelcanary alerts render`: the Prometheus rule files from a profile."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelcanary.commands.arguments import Commands, Parser, say

DEFAULT_DIR = Path("alerts")
# The chart embeds these in its PrometheusRule with .Files.Get, so that Helm never
# evaluates the rules' own {{ $labels }} templates.
CHART_RULES_DIR = Path("charts/modelcanary/files/rules")


def add(commands: Commands) -> None:
    p = commands.add_parser("alerts", help="render the alert and recording rules")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    render = verbs.add_parser(
        "render",
        help="write alerts/<profile>.rules.yml and the chart's copy from a profile",
        description="Render the recording rules (one group per metrics source) and the alert "
        "rules from the thresholds and windows of a profile.",
    )
    render.add_argument("--profile", default="demo", help="demo or production (default demo)")
    render.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a threshold or window; repeat",
    )
    render.add_argument(
        "--out",
        type=Path,
        default=None,
        help="file to write, - for stdout (default alerts/<profile>.rules.yml)",
    )
    render.set_defaults(handler=run_render)


def run_render(args: argparse.Namespace) -> int:
    from modelcanary.alerts.profile import load_profile
    from modelcanary.alerts.rules import render

    profile = load_profile(args.profile, args.overrides)
    text = render(profile)
    if args.out is not None and str(args.out) == "-":
        sys.stdout.write(text)
        return 0
    outputs = [args.out] if args.out else chart_and_alerts_paths(profile.name)
    for out in outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        say(f"wrote {out}")
    return 0


def chart_and_alerts_paths(profile: str) -> list[Path]:
    return [DEFAULT_DIR / f"{profile}.rules.yml", CHART_RULES_DIR / f"{profile}.yaml"]
