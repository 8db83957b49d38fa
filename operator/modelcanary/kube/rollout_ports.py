"""The engine's view of one ModelCanary: its spec and the ports that act on it (the
router of its mode, its status store, the checks before traffic, the shadow control)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelcanary.adapters import factory
from modelcanary.adapters.comparator_shadow import ComparatorShadow
from modelcanary.adapters.golden_check import run_golden_check
from modelcanary.adapters.holdout_gate import run_holdout_gate
from modelcanary.adapters.kserve_router import Services
from modelcanary.adapters.kube_client import KubeError
from modelcanary.adapters.status_store import StatusStore
from modelcanary.kube.api import model_canary
from modelcanary.kube.check_target import NO_REPOSITORY, Target, check_target
from modelcanary.rollout.engine import Rollout
from modelcanary.rollout.ports import GateResult, GoldenResult
from modelcanary.rollout.spec import RolloutSpec

if TYPE_CHECKING:
    from modelcanary.kube.operator import Runtime

MODE_ANNOTATION = "modelcanary.io/mode"
ISVC_ANNOTATION = "modelcanary.io/inference-service"


def build_rollout(
    runtime: Runtime,
    namespace: str,
    name: str,
    spec: RolloutSpec,
    body: dict[str, Any],
    services: Services | KubeError,
) -> Rollout:
    """The engine's view of one ModelCanary: its spec and the ports that act on it; the
    canary's readiness comes from SERVICES, the tick's one list of InferenceServices."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    mode: factory.KubeMode = (
        "standard" if annotations.get(MODE_ANNOTATION) == "standard" else "serverless"
    )
    isvc = annotations.get(ISVC_ANNOTATION, spec.model)
    stable, canary = spec.stable.version, spec.canary.version
    router = factory.kube_router(mode, runtime.api, namespace, isvc, spec.model, stable, canary)
    holdout = spec.analysis.holdout
    config = runtime.config
    local = (config.model_repo, config.predictor_url)
    found: list[Target] = []  # check_target's answer, asked once (a lambda in a cache
    # wrapper cost more than the tick's work for a holding rollout)

    def target() -> Target:
        if not found:
            found.append(check_target(runtime.api, services, local, mode, namespace, isvc, spec))
        return found[0]

    def golden() -> GoldenResult:
        (_, canary_url), repo = target()
        if repo is None:
            return GoldenResult(True, f"not checked: {NO_REPOSITORY}")
        return run_golden_check(canary_url, repo, spec.model, canary)

    def gate() -> GateResult:
        urls, repo = target()
        if repo is None:
            return GateResult("not checked", NO_REPOSITORY)
        return run_holdout_gate(
            urls, repo, spec.model, (stable, canary), holdout.margin, holdout.confidence
        )

    def ready() -> bool:
        if isinstance(services, KubeError):
            raise services
        return router.canary_ready(services)

    shadow = None
    if config.comparator:
        shadow = ComparatorShadow(
            config.comparator,
            config.comparator_token,
            spec.model,
            stable,
            canary,
            canary_predictor=lambda: target()[0][1],
            client=runtime.comparator,
            numeric=spec.shadow.numeric,
        )
    return Rollout(
        name=f"{namespace}/{name}",
        spec=spec,
        store=StatusStore(
            model_canary(runtime.api, namespace, name), listed=body, parsed=runtime.states
        ),
        router=router,
        golden=golden,
        readiness=ready,
        gate=gate,
        shadow=shadow,
    )
