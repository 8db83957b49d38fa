"""The file state store and the gateway router."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from modelcanary.adapters.file_store import FileStateStore
from modelcanary.adapters.gateway_router import GatewayRouter, RouterError
from modelcanary.errors import UsageError
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.ports import Split, StateNotSaved
from modelcanary.rollout.state import RolloutState, Transition


def test_state_roundtrips_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "digits")
    assert store.load() is None
    state = RolloutState(
        phase="Progressing",
        step=1,
        weight=50,
        started_at=1.0,
        step_started_at=2.0,
        history=(
            Transition(
                2.0, "advance", "Progressing", 1, 50, "checks passed", {"error_ratio": 0.001}
            ),
        ),
    )
    store.save(state)
    assert store.load() == state
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["state.json"]


def test_a_corrupt_state_is_named(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    store.state_path.write_text("{half")
    with pytest.raises(UsageError, match=r"state\.json: not a readable rollout state"):
        store.load()


# a table: one case per line, read across
# fmt: off
BAD_STATES = [
    ("[]", "state.json: the state: must be an object, got []"),
    ('{"step": "x"}', 'state.json: step: must be a valid integer, got "x"'),
    ('{"phase": "Progressing", "step": 99, "weight": 50}',
     "state.json: step: must be an integer between -1 (before the first step) and 2, got 99"),
    ('{"phase": "Progressing", "step": 1, "weight": 150}',
     "state.json: weight: must be an integer between 0 and 100, got 150"),
    ('{"phase": "Bogus"}', "state.json: phase: must be 'Pending', 'Shadowing', "),
]
# fmt: on


@pytest.mark.parametrize(("written", "message"), BAD_STATES)
def test_a_state_that_is_not_one_is_refused_naming_the_field(
    tmp_path: Path, written: str, message: str
) -> None:
    """Issue 25 finding 7: `[]` and a step "x" gave tracebacks; step 99, weight 150 and
    phase "Bogus" were accepted (the last went on to 100%)."""
    store = FileStateStore(tmp_path, steps=3)
    store.state_path.write_text(written)
    with pytest.raises(UsageError) as refused:
        store.load()
    assert message in str(refused.value)
    assert "\n" not in str(refused.value) and "rollout repair" in str(refused.value)


def test_a_state_that_cannot_be_written_names_the_file_and_is_kept_in_memory(
    tmp_path: Path,
) -> None:
    """Issue 25 finding 6, on a real filesystem: the rollout's directory sits under a file."""
    (tmp_path / "up").write_text("not a directory")
    store = FileStateStore(tmp_path / "up" / "digits")
    moved = RolloutState(phase="Progressing", step=0, weight=10)
    with pytest.raises(StateNotSaved) as failed:
        store.save(moved)
    assert str(failed.value) == (
        f"cannot write {store.state_path}: Not a directory ({tmp_path / 'up' / 'digits'})"
    )
    assert store.load() == moved  # the controller goes on from what it decided
    with pytest.raises(StateNotSaved):
        store.save(replace(moved, weight=50, applied=False))  # a write-ahead is not kept
    assert store.load() == moved


def test_an_immutable_state_directory_fails_the_write_and_a_later_save_succeeds(
    tmp_path: Path,
) -> None:
    """Issue 25 finding 6 with `chattr +i` (root may write a chmod 0 file; not this)."""
    store = FileStateStore(tmp_path / "digits")
    store.save(RolloutState())
    locked = subprocess.run(["chattr", "+i", str(store.directory)], check=False)
    if locked.returncode != 0:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        with pytest.raises(
            StateNotSaved, match=r"cannot write .*state\.json: Operation not permitted$"
        ):
            store.save(RolloutState(phase="Shadowing"))
        assert store.load() == RolloutState(phase="Shadowing")
    finally:
        subprocess.run(["chattr", "-i", str(store.directory)], check=True)
    store.save(RolloutState(phase="Shadowing", weight=0))
    assert store.unsaved is None and FileStateStore(store.directory).load() == RolloutState(
        phase="Shadowing"
    )


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
        return httpx.Response(200, json={"weights": {"1": 75, "2": 25, "3": 0}, "stable": "1"})

    router(handler).route(25, promoted=False)
    router(handler).route(100, promoted=True)
    assert seen[0].url.path == "/admin/models/digits/weights"
    assert json.loads(seen[0].content) == {"weights": {"1": 75, "2": 25}, "stable": "1"}
    assert json.loads(seen[1].content) == {"weights": {"1": 0, "2": 100}, "stable": "2"}
    assert seen[0].headers["authorization"] == "Bearer t0k"
    assert router(handler).split() == Split({"1": 75, "2": 25, "3": 0}, "1")


def test_a_split_that_cannot_be_read_is_a_router_error() -> None:
    for reply in (
        httpx.Response(401, json={"error": "bad token"}),
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json={"weights": {"1": "lots"}, "stable": "1"}),
    ):
        with pytest.raises(RouterError, match=r"gave no weights"):
            router(lambda r, reply=reply: reply).split()


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


def test_an_intent_that_is_a_directory_is_one_line_not_a_crash(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    store.intent_path.mkdir()
    with pytest.raises(UsageError, match=r"intent\.json: not readable: Is a directory$"):
        store.read_intent()
