"""CustomResourceDefinitions on a real API server: the upstream ones the chart's objects
need (tests/crds/) and the chart's own ModelCanary CRD (charts/modelcanary/crds/).

from tests.support.kube_crds import modelcanary_crd, upstream_crds  # noqa: F401
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.apiserver import REPO, ApiServer

UPSTREAM_CRDS = REPO / "tests" / "crds"
CHART = REPO / "charts" / "modelcanary"
CHART_CRDS = CHART / "crds"


def crd_names_in(path: Path) -> list[str]:
    """The metadata.name of every CRD in a YAML file."""
    # BaseLoader: the AlertmanagerConfig CRD holds a bare `=` that SafeLoader refuses.
    documents = yaml.load_all(path.read_text(), Loader=yaml.BaseLoader)
    return [d["metadata"]["name"] for d in documents if d]


def crd_names(directory: Path) -> list[str]:
    """The metadata.name of every CRD in the directory's YAML files."""
    return [name for path in sorted(directory.glob("*.yaml")) for name in crd_names_in(path)]


def install_crds(server: ApiServer, directory: Path) -> list[str]:
    """Create the directory's CRDs the server lacks, wait until each is Established, and
    return their names. (`kubectl create`: the large upstream CRDs do not fit in the
    last-applied annotation, and server-side apply of them takes three times as long.)"""
    listed = server.kubectl("get", "crd", "-o", "name").stdout.split()
    present = {line.rsplit("/", 1)[-1] for line in listed}
    for path in sorted(directory.glob("*.yaml")):
        if not set(crd_names_in(path)) <= present:
            server.kubectl("create", "-f", str(path))
    names = crd_names(directory)
    server.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{name}" for name in names)
    )
    return names


@pytest.fixture(scope="session")
def upstream_crds(apiserver: ApiServer) -> list[str]:
    """KServe's, the prometheus-operator's and Gateway API's CRDs on the session's server."""
    return install_crds(apiserver, UPSTREAM_CRDS)


@pytest.fixture(scope="session")
def modelcanary_crd(apiserver: ApiServer) -> str:
    """The chart's ModelCanary CRD on the session's server."""
    (name,) = install_crds(apiserver, CHART_CRDS)
    return name


@pytest.fixture(scope="session")
def crds(modelcanary_crd: str, upstream_crds: list[str]) -> None:
    """The chart's ModelCanary CRD and the upstream ones (KServe's InferenceService)."""
