"""pytest fixtures for a real API server: import them into a conftest.py.

from tests.support.kube_fixtures import apiserver, module_namespace, namespace  # noqa: F401
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apiserver import ApiServer, assets_dir

MISSING = (
    "kube-apiserver and etcd not found (KUBEBUILDER_ASSETS, else .venv/envtest): run "
    "`make setup` (scripts/install-envtest.sh), or point KUBEBUILDER_ASSETS at a directory "
    "from `setup-envtest use 1.34 -p path`"
)


def required_assets() -> Path:
    """The envtest binaries' directory; skips the test without them, fails it in CI."""
    assets = assets_dir()
    if assets is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {MISSING}", pytrace=False)
        pytest.skip(MISSING)
    return assets


@pytest.fixture(scope="session")
def apiserver() -> Iterator[ApiServer]:
    """One kube-apiserver and etcd for the session; skipped without binaries, failed in CI."""
    with ApiServer(required_assets()) as server:
        yield server


def create_namespace(server: ApiServer) -> str:
    """A fresh namespace; left behind, as namespaces never finish deleting without a
    controller-manager."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    server.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def namespace(apiserver: ApiServer) -> str:
    """A fresh namespace for the test."""
    return create_namespace(apiserver)


@pytest.fixture(scope="module")
def module_namespace(apiserver: ApiServer) -> str:
    """A fresh namespace for the test module."""
    return create_namespace(apiserver)
