"""The models of one `modelcanary up`: each one's served versions, stable version and split.

`plan` checks every model against the repository before anything starts (an unknown model,
a version the repository or `--versions` lacks), so a bad `--model` starts nothing. `split`
then gives each model its gateway split: the one asked for, or the one its unfinished
rollout in the run directory left (modelcanary.local.run_dir.resumed_split).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcanary.errors import UsageError
from modelcanary.local.run_dir import resumed_split
from modelcanary.modelrepo.repository import ModelRepository


@dataclass(frozen=True)
class ServedModel:
    """One model of the stack: its stable version, and a canary at a weight (percent)."""

    name: str
    stable: int
    canary: int | None = None
    canary_weight: int = 0


@dataclass(frozen=True)
class ModelPlan:
    """A model as the stack serves it: its versions, stable version and split."""

    name: str
    versions: list[int]
    stable: str
    weights: dict[str, int]

    def document(self) -> dict[str, Any]:
        """The model in up.json's `models`."""
        return {
            "name": self.name, "stable": self.stable, "versions": self.versions,
            "weights": self.weights,
        }  # fmt: skip


def plan(repo: Path, models: Sequence[ServedModel], versions: Sequence[int]) -> list[ModelPlan]:
    """Each model's served versions (`versions`, else every one in the repository) and the
    split asked for; a one-line error for a model or version the repository lacks."""
    repository = ModelRepository(repo)
    known = repository.models()
    plans = []
    for model in models:
        if model.name not in known:
            raise UsageError(
                f"--model {model.name}: no such model in {repo} (its models: "
                f"{', '.join(known) or 'none'})"
            )
        served = sorted(set(versions or repository.versions(model.name)))
        missing = [v for v in (model.stable, model.canary) if v is not None and v not in served]
        if missing:
            raise UsageError(
                f"{model.name} version {missing[0]} is not among the served versions "
                f"{', '.join(map(str, served)) or '(none)'} of {repo}"
            )
        weights = {str(v): 0 for v in served} | {str(model.stable): 100}
        if model.canary is not None:
            weights[str(model.stable)] = 100 - model.canary_weight
            weights[str(model.canary)] = model.canary_weight
        plans.append(ModelPlan(model.name, served, str(model.stable), weights))
    return plans


def resumed(model: ModelPlan, run_dir: Path, say: Callable[[str], None]) -> ModelPlan:
    """The model with the split its unfinished rollout in the run directory left, if any."""
    found = resumed_split(run_dir, model.name, model.versions, say)
    if found is None:
        return model
    stable, weights = found
    every = {str(v): 0 for v in model.versions} | weights
    return ModelPlan(model.name, model.versions, stable, every)


def describe_model(model: dict[str, Any]) -> str:
    """One line of `up`'s summary for a model of up.json."""
    versions = ", ".join(map(str, model["versions"]))
    line = f"model {model['name']}: stable {model['stable']} (versions {versions})"
    taking = {v: w for v, w in model["weights"].items() if w}
    if list(taking) != [model["stable"]]:
        line += ", split " + ", ".join(f"{v}={w}" for v, w in taking.items())
    return line
