"""The operator's Kubernetes adapters against kmock: conflicts and errors are named."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kmock
import pytest

from modelcanary.adapters.status_store import StatusStore
from modelcanary.kube.api import ConflictError, KubeError, custom_objects, model_canary
from modelcanary.rollout.state import RolloutState
from tests.conftest import register_kind

MC = "/apis/modelcanary.io/v1alpha1/namespaces/default/modelcanaries"


async def created(kmock: kmock.KubernetesEmulator) -> StatusStore:
    register_kind(kmock, "modelcanary.io/v1alpha1/modelcanaries", "ModelCanary")
    body: dict[str, Any] = {
        "apiVersion": "modelcanary.io/v1alpha1", "kind": "ModelCanary",
        "metadata": {"name": "digits", "namespace": "default", "resourceVersion": "7"},
        "spec": {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}},
    }  # fmt: skip
    async with (
        aiohttp.ClientSession(base_url=str(kmock.url)) as session,
        session.post(MC, json=body) as response,
    ):
        assert response.status < 300
    api = custom_objects(str(kmock.url).rstrip("/"))
    return StatusStore(model_canary(api, "default", "digits"))


@pytest.mark.asyncio
async def test_a_write_carries_the_version_it_read(kmock: kmock.KubernetesEmulator) -> None:
    store = await created(kmock)
    assert await asyncio.to_thread(store.load) is None
    await asyncio.to_thread(store.save, RolloutState(phase="Progressing", step=0, weight=5))
    patch = [r for r in kmock if r.method == "PATCH"][-1]
    assert patch.data["metadata"] == {"resourceVersion": "7"}
    assert patch.data["status"]["phase"] == "Progressing" and patch.data["status"]["weight"] == 5
    loaded = await asyncio.to_thread(store.load)
    assert loaded is not None and loaded.weight == 5


@pytest.mark.asyncio
async def test_a_conflict_is_reported_as_such(kmock: kmock.KubernetesEmulator) -> None:
    store = await created(kmock)
    await asyncio.to_thread(store.load)
    kmock[f"patch {MC}/digits/status"] << 409
    with pytest.raises(
        ConflictError, match=r"patching modelcanaries.modelcanary.io default/digits: 409"
    ):
        await asyncio.to_thread(store.save, RolloutState())
    missing = StatusStore(model_canary(store.resource.api, "default", "ghost"))
    with pytest.raises(KubeError, match=r"reading modelcanaries.modelcanary.io default/ghost: 404"):
        await asyncio.to_thread(missing.load)
