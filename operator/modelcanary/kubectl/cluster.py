"""The cluster side of `kubectl canary`: ModelCanary resources read, listed and annotated
through the kubeconfig, and what a resource says of its rollout."""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from modelcanary.adapters.kube_client import NotFoundError
from modelcanary.adapters.status_store import INTENT_ANNOTATION
from modelcanary.errors import ModelcanaryError, NotAllowed, UsageError
from modelcanary.kube.api import model_canary
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.rollout.intents import Phase
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.state import RolloutState, StateError


class Cluster:
    """ModelCanary resources through the kubeconfig's current (or given) context."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None):
        from kubernetes import client, config

        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            chosen = (
                next((c for c in contexts if c["name"] == context), None) if context else active
            )
            if context and chosen is None:
                raise UsageError(f"--context {context}: no such context in the kubeconfig")
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except config.ConfigException as exc:
            raise UsageError(f"kubeconfig: {exc}") from None
        self.namespace = namespace or (chosen or {}).get("context", {}).get("namespace", "default")
        self.user = (chosen or {}).get("context", {}).get("user") or getpass.getuser()
        self.api = client.CustomObjectsApi(api_client)

    def get(self, name: str) -> dict[str, Any]:
        try:
            return model_canary(self.api, self.namespace, name).get()
        except NotFoundError:
            raise NotAllowed(
                f"modelcanary {name!r} not found in namespace {self.namespace!r}"
            ) from None

    def list(self, all_namespaces: bool) -> list[dict[str, Any]]:
        try:
            if all_namespaces:
                found = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                found = self.api.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
        except Exception as exc:
            raise ModelcanaryError(f"listing modelcanaries: {exc}") from None
        return cast(list[dict[str, Any]], cast(dict[str, Any], found).get("items", []))

    def annotate(self, name: str, value: str, namespace: str | None = None) -> None:
        """Record an intent on the resource (in the context's namespace, or NAMESPACE)."""
        body = {"metadata": {"annotations": {INTENT_ANNOTATION: value}}}
        model_canary(self.api, namespace or self.namespace, name).patch(body)


class Loaded(NamedTuple):
    """What a resource says of its rollout: `spec` and `phase` are None when the rollout
    cannot be acted on, and `problem` says why in one line."""

    spec: RolloutSpec | None
    state: RolloutState
    phase: Phase | None
    problem: str
    unreadable: bool = False


def loaded(resource: dict[str, Any]) -> Loaded:
    """The spec, the state and the phase of a resource; an invalid spec or a status.state
    that is not a rollout state is a `problem`, never an exception."""
    name = resource.get("metadata", {}).get("name", "?")
    status = resource.get("status", {})
    raw = status.get("state")
    try:
        state = RolloutState.from_json(raw) if raw else RolloutState()
    except StateError as exc:
        return Loaded(None, RolloutState(), None, f"status.state is unreadable: {exc}", True)
    try:
        spec = parse_spec(resource.get("spec"), f"modelcanary {name}")
    except UsageError:
        spec = None
    if spec is None or status.get("phase") == "Invalid":
        return Loaded(None, state, None, status.get("message", "the spec is not valid"))
    return Loaded(spec, state, state.phase, "")


def list_rows(items: Sequence[dict[str, Any]], all_namespaces: bool, now: float) -> list[list[str]]:
    header = ["NAME", "PHASE", "MODEL", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE"]
    rows = [(["NAMESPACE"] if all_namespaces else []) + header]
    for item in sorted(
        items, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"])
    ):
        meta, spec, status = item["metadata"], item.get("spec", {}), item.get("status", {})
        steps = spec.get("steps") or []
        step = f"{status.get('step', 0)}/{len(steps)}" if steps else str(status.get("step", 0))
        stable = str(spec.get("stable", {}).get("version", ""))
        canary = str(spec.get("canary", {}).get("version", ""))
        row = [
            meta["name"],
            status.get("phase", "Pending"),
            str(spec.get("model", "")),
            stable,
            canary,
            f"{status.get('weight', 0)}%",
            step,
            _age(meta.get("creationTimestamp"), now),
        ]
        rows.append(([meta.get("namespace", "")] if all_namespaces else []) + row)
    return rows


def _age(created: str | None, now: float) -> str:
    if not created:
        return "-"
    seconds = now - datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"
