"""The operator's Kubernetes adapters against the real API server: a status write carries
the resourceVersion it read, so a concurrent change is a named conflict; errors are named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config

from modelcanary.adapters.kube_client import ConflictError, KubeError, Resource
from modelcanary.adapters.status_store import StatusStore
from modelcanary.kube.api import model_canary
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.rollout.state import RolloutState
from tests.support.apiserver import ApiServer


@pytest.fixture
def objects_api(apiserver: ApiServer) -> Iterator[client.CustomObjectsApi]:
    with config.new_client_from_config(config_file=str(apiserver.kubeconfig)) as api:
        yield client.CustomObjectsApi(api)


@pytest.fixture
def digits(objects_api: client.CustomObjectsApi, modelcanary_crd: str, namespace: str) -> Resource:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelCanary",
        "metadata": {"name": "digits", "namespace": namespace},
        "spec": {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}},
    }
    objects_api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return model_canary(objects_api, namespace, "digits")


def test_state_round_trips_through_the_status_subresource(digits: Resource) -> None:
    store = StatusStore(digits)
    assert store.load() is None
    store.save(RolloutState(phase="Progressing", step=0, weight=5))
    stored = digits.get()
    assert stored["status"]["phase"] == "Progressing" and stored["status"]["weight"] == 5
    assert stored["spec"]["canary"] == {"version": "2"}  # the status write left the spec
    loaded = StatusStore(digits).load()
    assert loaded is not None and (loaded.phase, loaded.weight) == ("Progressing", 5)


def test_a_write_over_a_newer_change_is_a_conflict(digits: Resource) -> None:
    """The write carries the resourceVersion it read: someone's change in between (here a
    person's intent annotation) makes it fail with 409 instead of being overwritten."""
    store = StatusStore(digits)
    store.load()
    digits.patch({"metadata": {"annotations": {"modelcanary.io/intent": "{}"}}})
    with pytest.raises(ConflictError, match=rf"patching {digits.where}: 409 Conflict"):
        store.save(RolloutState(phase="Progressing", step=0, weight=5))
    assert "status" not in digits.get()
    store.load()  # a fresh read, and the write goes through
    store.save(RolloutState(phase="Progressing", step=0, weight=5))
    assert digits.get()["status"]["weight"] == 5


def test_a_missing_object_is_named(objects_api: client.CustomObjectsApi, namespace: str) -> None:
    missing = StatusStore(model_canary(objects_api, namespace, "ghost"))
    pattern = rf"reading modelcanaries.modelcanary.io {namespace}/ghost: 404 Not Found"
    with pytest.raises(KubeError, match=pattern):
        missing.load()
