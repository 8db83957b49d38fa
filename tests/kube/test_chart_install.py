"""The chart on a real API server: `helm install`, `upgrade` and `uninstall` in both modes,
a second release in another namespace, and the operator's RBAC as the chart grants it,
exercised by the operator's own adapters acting as the chart's ServiceAccount.

The server has no controllers: objects are stored and validated, nothing reconciles them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelcanary.adapters.gateway_api_router import StandardRouter
from modelcanary.adapters.kserve_router import ServerlessRouter
from modelcanary.kube.api import model_canary
from modelcanary.kube.crd import NAME as CRD
from modelcanary.kube.leader import LeaseElector
from tests.support.apiserver import ApiServer
from tests.support.kube_crds import CHART, CHART_CRDS, UPSTREAM_CRDS, install_crds
from tests.support.kube_fixtures import required_assets
from tests.support.waits import until

HELM = str(Path(sys.executable).with_name("helm"))
MODEL = "digits"
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ApiServer]:
    """A server of this module's own, with the upstream CRDs but not the ModelCanary CRD:
    the empty cluster a first install (or a GitOps tool applying the chart) meets. The
    session's server cannot be it: other modules put the CRD there first."""
    with ApiServer(required_assets()) as server:
        install_crds(server, UPSTREAM_CRDS)
        yield server


@dataclass
class Release:
    name: str
    namespace: str
    installed: subprocess.CompletedProcess[str]

    @property
    def fullname(self) -> str:
        """The operator's ServiceAccount, Role, Lease and Secret prefix."""
        return f"{self.name}-modelcanary"


class Helm:
    """The venv's helm against the module's server, with its own config, cache and data."""

    def __init__(self, server: ApiServer, home: Path) -> None:
        self.server = server
        self.env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HELM, f"--kubeconfig={self.server.kubeconfig}", *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=120,
        )

    def install(self, name: str, namespace: str, *values: str) -> Release:
        installed = self(
            "install", name, str(CHART), "-n", namespace, "--create-namespace", *values
        )
        return Release(name, namespace, installed)

    def upgrade(self, release: Release, *values: str) -> None:
        upgraded = self(
            "upgrade",
            release.name,
            str(CHART),
            "-n",
            release.namespace,
            "--reuse-values",
            *values,
        )
        assert upgraded.returncode == 0, upgraded.stderr

    def manifest(self, release: Release) -> str:
        shown = self("get", "manifest", release.name, "-n", release.namespace)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    def uninstall(self, release: Release) -> None:
        removed = self("uninstall", release.name, "-n", release.namespace, "--wait")
        assert removed.returncode == 0, removed.stderr


@pytest.fixture(scope="module")
def helm(cluster: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(cluster, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def first_release(cluster: ApiServer, helm: Helm) -> Release:
    """The first release on the empty cluster, with a canary: the CRD and its first
    ModelCanary in one release. Every test asks for it, so it is installed first."""
    absent = cluster.kubectl("get", f"crd/{CRD}", check=False)
    assert absent.returncode != 0 and "NotFound" in absent.stderr, "the CRD must be absent"
    return helm.install("mc", "models", "--set", "model.canary=2")


def installed(release: Release) -> Release:
    assert release.installed.returncode == 0, release.installed.stderr
    return release


def get(server: ApiServer, kind: str, name: str, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        server.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    )
    return found


def canary_version(server: ApiServer, namespace: str) -> object:
    return get(server, "modelcanary", MODEL, namespace)["spec"]["canary"]["version"]


def webhook_token(server: ApiServer, release: Release) -> str:
    secret = get(server, "secret", f"{release.fullname}-webhook", release.namespace)
    return base64.b64decode(secret["data"]["token"]).decode()


def triton_control_key(server: ApiServer, release: Release) -> str:
    secret = get(server, "secret", f"{release.fullname}-triton-control", release.namespace)
    return base64.b64decode(secret["data"]["control-key"]).decode()


def objects(manifest: str) -> list[tuple[str, str]]:
    """(kind, name) of each object in a release manifest."""
    documents = [d for d in yaml.safe_load_all(manifest) if d]
    return [(d["kind"], d["metadata"]["name"]) for d in documents]


def existing(server: ApiServer, manifest: str, namespace: str) -> list[tuple[str, str]]:
    """(kind, name) of the manifest's objects that exist on the server (kind lower case)."""
    found = server.kubectl(
        "get",
        "-f",
        "-",
        "-n",
        namespace,
        "-o",
        "name",
        "--ignore-not-found",
        input=manifest,
    )
    kinds_and_names = (line.split("/", 1) for line in found.stdout.split())
    return [(kind.split(".", 1)[0], name) for kind, name in kinds_and_names]


def as_operator(server: ApiServer, release: Release) -> client.ApiClient:
    """An API client acting as the chart's ServiceAccount, as the operator's pod would."""
    kubeconfig = server.token_for(release.fullname, release.namespace)
    api: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))
    return api


def eventually(call: Callable[[], T], timeout: float = 10) -> T:
    """CALL, retried on 403 while the authorizer's cache catches up with a new Role."""
    answers: list[T] = []

    def answered() -> bool:
        try:
            answers.append(call())
        except ApiException as exc:
            if exc.status != 403:
                raise
            return False
        except Exception as exc:  # the adapters wrap ApiException in KubeError
            if ": 403 " not in str(exc):
                raise
            return False
        return True

    until(answered, timeout, "still refused (403 Forbidden) as the chart's ServiceAccount")
    return answers[0]


def can_i(server: ApiServer, kubeconfig: Path, namespace: str, verb: str, what: str) -> bool:
    resource, _, subresource = what.partition("/")
    args = ["auth", "can-i", verb, resource, "-n", namespace]
    if subresource:
        args.append(f"--subresource={subresource}")
    asked = server.kubectl(*args, kubeconfig=kubeconfig, check=False)
    assert asked.stdout.strip() in ("yes", "no"), asked.stderr
    return asked.stdout.strip() == "yes"


def test_one_release_holds_the_crd_and_its_first_modelcanary(
    cluster: ApiServer, helm: Helm, first_release: Release
) -> None:
    """Issue 12 defect 8: `--set model.canary=2` on an empty cluster failed with "no matches
    for kind ModelCanary": the CRD was a template of the release that used it."""
    release = installed(first_release)
    manifest = helm.manifest(release)
    made = objects(manifest)
    # 15, the shadow comparator's 5, the Triton control key's Secret and the Grafana
    # dashboards' ConfigMap; and each exists:
    assert len(made) == 22
    assert existing(cluster, manifest, release.namespace) == [(k.lower(), n) for k, n in made]
    assert canary_version(cluster, release.namespace) == "2"
    assert ("CustomResourceDefinition", CRD) not in objects(manifest)  # crds/, not a template
    crd = get(cluster, "crd", CRD, "")
    assert "meta.helm.sh/release-name" not in crd["metadata"].get("annotations", {})
    # Helm never upgrades crds/; this is how the README says to
    applied = cluster.kubectl("apply", "-f", str(CHART_CRDS), check=False)
    assert applied.returncode == 0, applied.stderr


def test_a_second_release_in_another_namespace_installs(
    cluster: ApiServer, helm: Helm, first_release: Release
) -> None:
    """Issue 12 defect 7: a second release failed on the CRD's ownership ("invalid
    ownership metadata ... must equal "mcs": current value is "mc"). Stable only at first,
    as in the issue, so that the releases reach the CRD even where defect 8 is present."""
    one = installed(helm.install("mc-a", "models-a"))
    two = installed(helm.install("mcs", "models-b"))
    helm.upgrade(two, "--set", "model.canary=3")
    assert canary_version(cluster, two.namespace) == "3"
    helm.uninstall(two)
    assert get(cluster, "crd", CRD, "")["metadata"]["name"] == CRD  # no release owns it
    assert get(cluster, "inferenceservice", MODEL, one.namespace)
    first = installed(first_release)
    assert canary_version(cluster, first.namespace) == "2"


def test_serverless_upgrade_keeps_the_live_split_and_the_token_and_uninstall_removes(
    cluster: ApiServer, helm: Helm, first_release: Release
) -> None:
    installed(first_release)
    release = installed(helm.install("serverless", "serverless", "--set", "model.canary=2"))
    isvc = get(cluster, "inferenceservice", MODEL, release.namespace)
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
    token, key = webhook_token(cluster, release), triton_control_key(cluster, release)

    with as_operator(cluster, release) as api:  # the operator moves the rollout on
        objects_api = client.CustomObjectsApi(api)
        router = ServerlessRouter(objects_api, release.namespace, MODEL, "1", "2")
        eventually(lambda: router.route(25, promoted=False))
        status = {"status": {"phase": "Progressing", "step": 2, "weight": 25}}
        model_canary(objects_api, release.namespace, MODEL).patch(status, status=True)

    helm.upgrade(release, "--set", "rollout.interval=1m")

    predictor = get(cluster, "inferenceservice", MODEL, release.namespace)["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 25  # the live value, not the chart's 0
    assert predictor["model"]["args"] == ["--model-config-name=v2"]
    (guard,) = predictor["containers"]  # the request guard, stored as the chart rendered it
    assert guard["name"] == "transformer-container" and guard["args"][0] == "guard"
    assert webhook_token(cluster, release) == token
    assert triton_control_key(cluster, release) == key and len(key) == 40
    canary = get(cluster, "modelcanary", MODEL, release.namespace)
    assert canary["spec"]["interval"] == "1m"  # the upgrade did change the release
    assert canary["status"]["phase"] == "Progressing" and canary["status"]["weight"] == 25

    manifest = helm.manifest(release)
    helm.uninstall(release)
    assert existing(cluster, manifest, release.namespace) == []
    assert get(cluster, "crd", CRD, "")["metadata"]["name"] == CRD


def test_standard_upgrade_keeps_the_live_weights_and_the_token_and_uninstall_removes(
    cluster: ApiServer, helm: Helm, first_release: Release
) -> None:
    installed(first_release)
    release = installed(
        helm.install("standard", "standard", "--set", "model.canary=2", "--set", "mode=standard")
    )
    names = {"digits-v1", "digits-v2"}
    assert {n for n in names if get(cluster, "inferenceservice", n, release.namespace)} == names
    for name in names:  # each version's pods have the request guard
        predictor = get(cluster, "inferenceservice", name, release.namespace)["spec"]["predictor"]
        assert [c["name"] for c in predictor["containers"]] == ["transformer-container"]
    token = webhook_token(cluster, release)

    with as_operator(cluster, release) as api:
        router = StandardRouter(
            client.CustomObjectsApi(api), release.namespace, MODEL, MODEL, "1", "2"
        )
        eventually(lambda: router.route(25, promoted=False))

    helm.upgrade(release, "--set", "rollout.interval=1m")

    route = get(cluster, "httproute", MODEL, release.namespace)
    weights = [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [("digits-v1-predictor", 75), ("digits-v2-predictor", 25)]
    assert webhook_token(cluster, release) == token
    assert get(cluster, "modelcanary", MODEL, release.namespace)["spec"]["interval"] == "1m"

    manifest = helm.manifest(release)
    helm.uninstall(release)
    assert existing(cluster, manifest, release.namespace) == []


@pytest.mark.parametrize("mode", ["serverless", "standard"])
def test_the_operators_role_allows_what_it_does_and_no_deletes(
    cluster: ApiServer, helm: Helm, first_release: Release, mode: str
) -> None:
    installed(first_release)
    release = installed(
        helm.install(
            f"rbac-{mode}", f"rbac-{mode}", "--set", "model.canary=2", "--set", f"mode={mode}"
        )
    )
    kubeconfig = cluster.token_for(release.fullname, release.namespace)
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        objects_api = client.CustomObjectsApi(api)
        canary = model_canary(objects_api, release.namespace, MODEL)
        # real requests, as the operator makes them
        eventually(canary.get)
        objects_api.list_namespaced_custom_object(
            "modelcanary.io", "v1alpha1", release.namespace, "modelcanaries"
        )
        canary.patch({"metadata": {"annotations": {"modelcanary.io/intent": None}}})
        canary.patch({"status": {"phase": "Pending"}}, status=True)
        elector = LeaseElector(
            client.CoordinationV1Api(api), release.namespace, release.fullname, "replica-a"
        )
        assert elector.acquire_or_renew() and elector.acquire_or_renew()  # create, then update
        with pytest.raises(ApiException) as refused:
            objects_api.delete_namespaced_custom_object(
                "modelcanary.io", "v1alpha1", release.namespace, "modelcanaries", MODEL
            )
        assert refused.value.status == 403

    def allowed(verb: str, what: str) -> bool:
        return can_i(cluster, kubeconfig, release.namespace, verb, what)

    may = [
        ("get", "modelcanaries.modelcanary.io"),
        ("list", "modelcanaries.modelcanary.io"),
        ("watch", "modelcanaries.modelcanary.io"),
        ("patch", "modelcanaries.modelcanary.io"),
        ("get", "modelcanaries.modelcanary.io/status"),
        ("patch", "modelcanaries.modelcanary.io/status"),
        ("get", "inferenceservices.serving.kserve.io"),
        ("watch", "inferenceservices.serving.kserve.io"),
        ("patch", "inferenceservices.serving.kserve.io"),
        ("get", "leases.coordination.k8s.io"),
        ("create", "leases.coordination.k8s.io"),
        ("update", "leases.coordination.k8s.io"),
        ("create", "events"),
    ]
    routes = [
        ("get", "httproutes.gateway.networking.k8s.io"),
        ("patch", "httproutes.gateway.networking.k8s.io"),
    ]
    may_not = [
        ("create", "modelcanaries.modelcanary.io"),
        ("update", "modelcanaries.modelcanary.io"),
        ("create", "inferenceservices.serving.kserve.io"),
        ("get", "secrets"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
    ]
    for what in (
        "modelcanaries.modelcanary.io",
        "inferenceservices.serving.kserve.io",
        "httproutes.gateway.networking.k8s.io",
        "leases.coordination.k8s.io",
        "events",
        "secrets",
        "deployments.apps",
        "pods",
    ):
        may_not += [("delete", what), ("deletecollection", what)]
    (may if mode == "standard" else may_not).extend(routes)
    assert [p for p in may if not allowed(*p)] == []
    assert [p for p in may_not if allowed(*p)] == []
