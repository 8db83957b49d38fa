"""The Kubernetes API client the operator's adapters share."""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelcanary.errors import ModelcanaryError, one_line
from modelcanary.kube.crd import GROUP, PLURAL, VERSION


class KubeError(ModelcanaryError):
    """The Kubernetes API refused or could not be reached."""


class ConflictError(KubeError):
    """The object changed since it was read (resourceVersion precondition failed)."""


class NotFoundError(KubeError):
    """The object does not exist."""


def api_client(host: str | None = None) -> client.ApiClient:
    """In the cluster: the pod's service account; outside: kubeconfig; or a plain host."""
    if host is not None:
        configuration = client.Configuration()
        configuration.host = host
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def custom_objects(host: str | None = None) -> client.CustomObjectsApi:
    """The custom objects API on `api_client(host)`."""
    return client.CustomObjectsApi(api_client(host))


def describe(exc: Exception, what: str) -> KubeError:
    if isinstance(exc, ApiException):
        error = {409: ConflictError, 404: NotFoundError}.get(exc.status, KubeError)
        return error(f"{what}: {exc.status} {exc.reason}")
    return KubeError(f"{what}: {one_line(exc)}")


class Resource:
    """One namespaced custom object, read and merge-patched."""

    def __init__(
        self, api: client.CustomObjectsApi, group: str, version: str, plural: str,
        namespace: str, name: str,
    ) -> None:  # fmt: skip
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


def model_canary(api: client.CustomObjectsApi, namespace: str, name: str) -> Resource:
    return Resource(api, GROUP, VERSION, PLURAL, namespace, name)
