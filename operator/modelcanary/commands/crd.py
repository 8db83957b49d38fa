"""`modelcanary crd render`: the ModelCanary CRD from the rollout spec, and the chart's
other generated files (its values schema, its Grafana dashboards)."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelcanary.commands.arguments import Commands, Parser, say

# In crds/: Helm creates it before the templates (so one release can hold the CRD and its
# first ModelCanary) and never upgrades or deletes it.
CHART_CRD = Path("charts/modelcanary/crds/modelcanary.io_modelcanaries.yaml")
CHART_VALUES_SCHEMA = Path("charts/modelcanary/values.schema.json")
CHART_DASHBOARDS = Path("charts/modelcanary/files/dashboards")


def add(commands: Commands) -> None:
    p = commands.add_parser("crd", help="the ModelCanary custom resource definition")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    render = verbs.add_parser(
        "render",
        help="write the CRD (and the chart's values schema and Grafana dashboards)",
        description="Generate the CustomResourceDefinition of ModelCanary from the rollout "
        "spec's model, so the API server rejects what the controller would.",
    )
    render.add_argument("--out", default=str(CHART_CRD), help=f"file, or - (default {CHART_CRD})")
    render.add_argument(
        "--values-schema",
        default=str(CHART_VALUES_SCHEMA),
        help=f"the chart's values schema, generated beside it (default {CHART_VALUES_SCHEMA})",
    )
    render.add_argument(
        "--dashboards",
        default=str(CHART_DASHBOARDS),
        help=f"where the chart's Grafana dashboards are generated (default {CHART_DASHBOARDS})",
    )
    render.set_defaults(handler=_render)


def _render(args: argparse.Namespace) -> int:
    from modelcanary.dashboard import grafana
    from modelcanary.files import write_atomically
    from modelcanary.kube import crd, values_schema

    text = crd.render()
    if args.out == "-":
        print(text, end="")
        return 0
    write_atomically(Path(args.out), text)
    say(f"wrote {args.out}")
    write_atomically(Path(args.values_schema), values_schema.render())
    say(f"wrote {args.values_schema}")
    Path(args.dashboards).mkdir(parents=True, exist_ok=True)
    for file_name, name in grafana.FILES.items():
        write_atomically(Path(args.dashboards, file_name), grafana.render(name))
        say(f"wrote {Path(args.dashboards, file_name)}")
    return 0
