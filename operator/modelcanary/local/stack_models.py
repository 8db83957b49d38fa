"""The models of one `modelcanary up`: each one's served versions, stable version and split.

`plan` checks every model against the repository before anything starts (an unknown model,
a version the repository or `--versions` lacks), so a bad `--model` starts nothing, and
gives each the split asked for (the stack then takes the one its unfinished rollout in
the run directory left instead, if any: modelcanary.local.run_dir.resumed_split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcanary.errors import UsageError
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
        """The model in up.json's `models`: what does not change while `up` runs (the
        split does: the gateway's admin API has it)."""
        return {"name": self.name, "versions": self.versions}

    def describe(self) -> str:
        """One line of `up`'s summary."""
        versions = ", ".join(map(str, self.versions))
        line = f"model {self.name}: stable {self.stable} (versions {versions})"
        taking = {v: w for v, w in self.weights.items() if w}
        if list(taking) != [self.stable]:
            line += ", split " + ", ".join(f"{v}={w}" for v, w in taking.items())
        return line


def plan(repo: Path, models: Sequence[ServedModel], versions: Sequence[int]) -> list[ModelPlan]:
    """Each model's served versions (`versions`, else every one in the repository) and the
    split asked for; a one-line error for a model or version the repository lacks."""
    repository = ModelRepository(repo)
    known = repository.models()
    plans = []
    for model in models:
        if model.name not in known:
            raise UsageError(
                f"no model {model.name} in {repo} (its models: {', '.join(known) or 'none'})"
            )
        stored = repository.versions(model.name)
        served = sorted(set(versions or stored))
        absent = [v for v in served if v not in stored]
        if absent:
            raise UsageError(
                f"--versions: {model.name} has no version {absent[0]} in {repo} (its versions: "
                f"{', '.join(map(str, stored)) or 'none'})"
            )
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
