"""The envtest API server is real: objects persist, CRDs are validated, RBAC is enforced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelcanary.errors import UsageError
from modelcanary.rollout.spec import parse_spec
from tests.support.apiserver import REPO, ApiServer

pytestmark = pytest.mark.kube
SPEC = {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}}


def _api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture
def admin(apiserver: ApiServer) -> Iterator[client.CoreV1Api]:
    with _api(apiserver.kubeconfig) as api:
        yield client.CoreV1Api(api)


def test_server_is_kubernetes(apiserver: ApiServer) -> None:
    version = apiserver.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.' in version
    assert apiserver.url.startswith("https://127.0.0.1:")


def test_namespace_and_configmap_round_trip(admin: client.CoreV1Api) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    admin.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"})
    admin.create_namespaced_config_map(name, body)

    stored = admin.read_namespaced_config_map("settings", name)
    assert stored.data == {"a": "1"}
    assert stored.metadata.uid and stored.metadata.resource_version


def _rendered_crd() -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "operator"), os.environ.get("PYTHONPATH")])
        ),
    }
    return subprocess.run(
        [sys.executable, "-m", "modelcanary", "crd", "render", "--out", "-"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    ).stdout


def _apply_rendered_crd(apiserver: ApiServer) -> subprocess.CompletedProcess[str]:
    applied = apiserver.kubectl("apply", "-f", "-", input=_rendered_crd(), check=False)
    if applied.returncode == 0:
        apiserver.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/modelcanaries.modelcanary.io",
        )
    return applied


def test_generated_crd_is_accepted(apiserver: ApiServer) -> None:
    """Issue 12 defect 1: the CEL rules' estimated cost fits the budget (maxItems)."""
    applied = _apply_rendered_crd(apiserver)
    assert applied.returncode == 0, applied.stderr


@pytest.fixture
def create_canary(apiserver: ApiServer, namespace: str) -> Callable[..., str]:
    """Create a ModelCanary with these spec fields; '' if the API server accepted it, else
    its error."""
    applied = _apply_rendered_crd(apiserver)
    assert applied.returncode == 0, applied.stderr

    def create(**spec: Any) -> str:
        body = {
            "apiVersion": "modelcanary.io/v1alpha1",
            "kind": "ModelCanary",
            "metadata": {"name": f"mc-{uuid.uuid4().hex[:8]}", "namespace": namespace},
            "spec": {
                "model": "digits",
                "stable": {"version": "1"},
                "canary": {"version": "2"},
                **spec,
            },
        }
        created = apiserver.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
        return "" if created.returncode == 0 else created.stderr

    return create


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        # defect 6: the last-step rule indexed an empty list ("index out of bounds: -1")
        ({"steps": []}, "spec.steps in body should have at least 1 items"),
        # defect 6: 2 and "2" are one version (the engine says so and marked it Invalid)
        (
            {"stable": {"version": 2}, "canary": {"version": "2"}},
            "canary.version must differ from stable.version",
        ),
        (
            {"stable": {"version": "2"}, "canary": {"version": 2}},
            "canary.version must differ from stable.version",
        ),
        ({"canary": {"version": "1"}}, "canary.version must differ from stable.version"),
        # defect 1: maxItems bounds the rules' cost
        ({"steps": [*range(1, 21), 100]}, "spec.steps: Too many: 21: must have at most 20 items"),
        ({"steps": [50, 20, 100]}, "steps must increase"),
        ({"steps": [10, 10, 100]}, "steps must increase"),
        ({"steps": [10, 50]}, "the last step must be 100 (full traffic)"),
    ],
)
def test_the_api_server_rejects_what_the_engine_rejects(
    create_canary: Callable[..., str], spec: dict[str, Any], error: str
) -> None:
    with pytest.raises(UsageError):
        parse_spec({**SPEC, **spec}, "engine")
    refused = create_canary(**spec)
    assert error in refused, refused
    assert "index out of bounds" not in refused


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"stable": {"version": 1}, "canary": {"version": "2"}},
        {"steps": [*range(1, 20), 100]},
        {"steps": [100]},
    ],
)
def test_the_api_server_accepts_what_the_engine_accepts(
    create_canary: Callable[..., str], spec: dict[str, Any]
) -> None:
    parse_spec({**SPEC, **spec}, "engine")
    assert create_canary(**spec) == ""


def test_service_account_without_rbac_is_forbidden(apiserver: ApiServer, namespace: str) -> None:
    kubeconfig = apiserver.token_for("nobody", namespace)
    with _api(kubeconfig) as api, pytest.raises(ApiException) as raised:
        client.CoreV1Api(api).list_namespaced_config_map(namespace)
    assert raised.value.status == 403  # authenticated (not 401) but not authorized
    assert f"system:serviceaccount:{namespace}:nobody" in str(raised.value.body)


def test_role_binding_grants_the_service_account(apiserver: ApiServer, namespace: str) -> None:
    kubeconfig = apiserver.token_for("reader", namespace)
    apiserver.kubectl(
        "create", "role", "cm-reader", "--verb=list", "--resource=configmaps", "-n", namespace
    )
    apiserver.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    with _api(kubeconfig) as api:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + 10  # the authorizer reads RBAC from an informer cache
        while True:
            try:
                core.list_namespaced_config_map(namespace)
                break
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with pytest.raises(ApiException) as raised:
            core.list_namespaced_secret(namespace)
    assert raised.value.status == 403
