"""The Kubernetes API client the operator's adapters share: its errors, its configuration
and one namespaced custom object, read and merge-patched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelcanary.errors import ModelcanaryError, one_line


class KubeError(ModelcanaryError):
    """The Kubernetes API refused or could not be reached."""


class ConflictError(KubeError):
    """The object changed since it was read (resourceVersion precondition failed)."""


class NotFoundError(KubeError):
    """The object does not exist."""


def kubeconfig_configuration(kubeconfig: Path) -> client.Configuration:
    """The client configuration of KUBECONFIG's current context."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
    except (config.ConfigException, OSError) as exc:
        raise KubeError(f"kubeconfig {kubeconfig}: {one_line(exc)}") from None
    return configuration


def api_client(kubeconfig: Path | None = None) -> client.ApiClient:
    """KUBECONFIG if given; else in the cluster the pod's service account, outside it the
    default kubeconfig."""
    if kubeconfig is not None:
        return client.ApiClient(kubeconfig_configuration(kubeconfig))
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def describe(exc: Exception, what: str) -> KubeError:
    if isinstance(exc, ApiException):
        error = {409: ConflictError, 404: NotFoundError}.get(exc.status, KubeError)
        return error(f"{what}: {exc.status} {exc.reason}")
    return KubeError(f"{what}: {one_line(exc)}")


class Resource:
    """One namespaced custom object, read and merge-patched."""

    def __init__(
        self,
        api: client.CustomObjectsApi,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
    ) -> None:
        self.api, self.group, self.version, self.plural = api, group, version, plural
        self.namespace, self.name = namespace, name
        self.where = f"{plural}.{group} {namespace}/{name}"

    def get(self) -> dict[str, Any]:
        try:
            found = self.api.get_namespaced_custom_object(
                self.group, self.version, self.namespace, self.plural, self.name
            )
            return cast(dict[str, Any], found)
        except Exception as exc:
            raise describe(exc, f"reading {self.where}") from None

    def patch(self, body: dict[str, Any], status: bool = False) -> dict[str, Any]:
        call = (
            self.api.patch_namespaced_custom_object_status
            if status
            else self.api.patch_namespaced_custom_object
        )
        try:
            patched = call(self.group, self.version, self.namespace, self.plural, self.name, body)
            return cast(dict[str, Any], patched)
        except Exception as exc:
            raise describe(exc, f"patching {self.where}") from None
