"""The file state store and the gateway router."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from modelcanary.adapters.file_store import FileStateStore
from modelcanary.adapters.gateway_router import GatewayRouter, RouterError
from modelcanary.errors import UsageError
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.state import RolloutState, Transition


def test_state_roundtrips_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "digits")
    assert store.load() is None
    state = RolloutState(phase="Progressing", step=1, weight=50, started_at=1.0, step_started_at=2.0,
                         history=(Transition(2.0, "advance", "Progressing", 1, 50, "checks passed", {"error_ratio": 0.001}),))  # fmt: skip
    store.save(state)
    assert store.load() == state
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["state.json"]


def test_a_corrupt_state_is_named(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    store.state_path.write_text("{half")
    with pytest.raises(UsageError, match=r"state\.json: not a readable rollout state"):
        store.load()


def test_an_intent_stays_until_cleared_and_a_newer_one_survives(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    first = store.record_intent(Intent("rollback", "bad digits", "ana"))
    assert first.id and json.loads(store.intent_path.read_text())["by"] == "ana"
    assert store.read_intent() == first == store.read_intent()
    second = store.record_intent(Intent("pause", by="bo"))
    store.clear_intent(first)  # acted on the first; the second arrived meanwhile
    assert store.read_intent() == second
    store.clear_intent(second)
    assert store.read_intent() is None


def test_a_corrupt_intent_is_named_and_removed(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    store.intent_path.write_text('{"action": "promote", "colour": "red"}')
    with pytest.raises(UsageError, match=r"intent\.json: not a readable intent"):
        store.read_intent()
    assert store.read_intent() is None


def router(handler) -> GatewayRouter:  # type: ignore[no-untyped-def]
    return GatewayRouter(
        "http://gw", "t0k", "digits", "1", "2", httpx.Client(transport=httpx.MockTransport(handler))
    )


def test_router_sets_both_weights_with_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"weights": {"1": 75, "2": 25}})

    router(handler).route(25, promoted=False)
    router(handler).route(100, promoted=True)
    assert seen[0].url.path == "/admin/models/digits/weights"
    assert json.loads(seen[0].content) == {"weights": {"1": 75, "2": 25}, "stable": "1"}
    assert json.loads(seen[1].content) == {"weights": {"1": 0, "2": 100}, "stable": "2"}
    assert seen[0].headers["authorization"] == "Bearer t0k"
    assert router(handler).weight() == 25


def test_router_errors_name_the_gateway_and_its_reason() -> None:
    refused = router(lambda r: httpx.Response(400, json={"error": "digits version 2 is not ready"}))
    with pytest.raises(RouterError, match=r"refused weights .*400 digits version 2 is not ready"):
        refused.route(10, promoted=False)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(
        RouterError, match="the gateway at http://gw/admin/models/digits/weights is unreachable"
    ):
        router(down).route(10, promoted=False)


def test_the_canary_is_ready_when_the_gateway_says_its_version_is() -> None:
    """Issue 13 defect 4: locally, readiness defaulted to true, so a canary version Triton
    does not have showed `canary_ready 1 pass`."""
    asked: list[str] = []

    def gateway(ready: int) -> GatewayRouter:
        def handler(request: httpx.Request) -> httpx.Response:
            asked.append(request.url.path)
            return httpx.Response(ready)

        return router(handler)

    assert gateway(200).canary_ready() is True
    assert asked == ["/v2/models/digits/versions/2/ready"]
    assert gateway(404).canary_ready() is False  # not behind the gateway
    assert gateway(400).canary_ready() is False  # Triton: not loaded

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(RouterError, match="http://gw/v2/models/digits/versions/2/ready"):
        router(down).canary_ready()


def test_a_rollback_names_no_canary_the_gateway_may_not_know() -> None:
    """A canary that was never served is rolled back without naming it (the gateway gives
    every version it does not name 0% and refuses versions it does not serve)."""
    sent: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={})

    router(handler).route(0, promoted=False)
    assert sent == [{"weights": {"1": 100}, "stable": "1"}]
