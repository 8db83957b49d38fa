"""The CRDs the operator needs on a real API server: ModelCanary and KServe's
InferenceService (the upstream copy in tests/crds)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from modelcanary.kube.crd import crd
from tests.support.apiserver import REPO, ApiServer

UPSTREAM = REPO / "tests" / "crds"
ISVC_CRD = UPSTREAM / "serving.kserve.io_inferenceservices.yaml"
MAX_STEPS = 20


def modelcanary_crd() -> dict[str, Any]:
    """The generated ModelCanary CRD, with `maxItems` on spec.steps.

    TEMPORARY (issue 12 defect 1): the real API server rejects the generated CRD, as the
    CEL rule "steps must increase" over an unbounded list exceeds the cost budget. A
    `maxItems` bound is enough for the server to accept it (checked against v1.36). Drop
    this once the generator sets the bound itself."""
    document = crd()
    for version in document["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["steps"].setdefault("maxItems", MAX_STEPS)
    return document


def install_crds(server: ApiServer, *extra: Path) -> None:
    """Apply the ModelCanary and InferenceService CRDs (and EXTRA files); wait until served."""
    server.kubectl("apply", "-f", "-", input=json.dumps(modelcanary_crd()))
    for path in (ISVC_CRD, *extra):
        # server-side: the upstream CRDs are too large for the last-applied annotation
        server.kubectl("apply", "--server-side", "-f", str(path))
    deadline = time.monotonic() + 30
    for name in ("modelcanaries.modelcanary.io", "inferenceservices.serving.kserve.io"):
        while True:  # `kubectl wait` fails at once while a new CRD has no conditions yet
            waited = server.kubectl(
                "wait", "--for=condition=Established", "--timeout=10s", f"crd/{name}", check=False
            )
            if waited.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not established: {waited.stderr}")
            time.sleep(0.2)
