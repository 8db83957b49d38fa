"""The models `modelcanary up` serves, as given: `--model NAME:STABLE[:CANARY[:WEIGHT]]`
repeated, one `--model NAME --stable N [--canary C --canary-weight W]`, or `--models FILE`.

Each is checked here, before anything starts: a valid name, once only, a stable version,
a canary that is not stable, a weight from 0 to 100 that has a canary. Whether the
repository has them is checked by the stack (modelcanary.local.stack_models.plan).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelcanary.commands.up import MODEL_FORM
from modelcanary.errors import UsageError, describe_validation_errors, one_line
from modelcanary.files import read_text
from modelcanary.local.stack_models import ServedModel
from modelcanary.modelrepo.repository import check_model_name


def given_models(args: argparse.Namespace) -> tuple[ServedModel, ...]:
    """The models of `up`'s `--model` options or of its `--models` file (not both)."""
    flags = (args.stable, args.canary, args.canary_weight or None)
    if args.models_file is not None:
        if args.models or any(flag is not None for flag in flags):
            raise UsageError("give the models with --model or with --models, not both")
        return models_file(args.models_file)
    if not args.models:
        raise UsageError(
            f"no model to serve: give --model NAME --stable N, --model {MODEL_FORM} (repeated "
            "for several), or --models FILE"
        )
    return served_models(args.models, args.stable, args.canary, args.canary_weight)


def served_models(
    models: Sequence[str], stable: int | None, canary: int | None, canary_weight: int
) -> tuple[ServedModel, ...]:
    """The models `--model` names (`NAME:STABLE[:CANARY[:WEIGHT]]`, or a single NAME with
    --stable, --canary and --canary-weight), checked: each once, each with a stable version."""
    options = stable is not None or canary is not None or bool(canary_weight)
    if len(models) > 1 and options:
        raise UsageError(
            "--stable, --canary and --canary-weight go with a single --model; with several, "
            f"give each its own: --model {MODEL_FORM}"
        )
    if len(models) == 1 and ":" not in models[0]:
        if stable is None:
            raise UsageError(
                f"--model {models[0]}: no stable version; give --stable, or --model "
                f"{models[0]}:STABLE"
            )
        if not 0 <= canary_weight <= 100:
            raise UsageError("--canary-weight must be between 0 and 100")
        if canary_weight and canary is None:
            raise UsageError("--canary-weight needs --canary")
        if canary == stable:
            raise UsageError("--canary must differ from --stable")
        return (ServedModel(_named(models[0], "--model"), stable, canary, canary_weight),)
    found: list[ServedModel] = []
    for text in models:
        if stable is not None:
            raise UsageError(f"--model {text} gives the stable version already; drop --stable")
        if options:
            raise UsageError(f"--model {text}: give its canary as --model {MODEL_FORM}")
        model = _checked(f"--model {text}", _parse_model(text))
        if model.name in (m.name for m in found):
            raise UsageError(f"--model {model.name} is given twice")
        found.append(model)
    return tuple(found)


def _parse_model(text: str) -> ServedModel:
    """One `--model NAME[:STABLE[:CANARY[:WEIGHT]]]` (stable 0 when it names none)."""
    name, *fields = text.split(":")
    if len(fields) > 3:
        raise UsageError(f"--model {text}: expected {MODEL_FORM}")
    numbers: list[int | None] = []
    for field, what in zip(fields, ("stable version", "canary", "canary weight"), strict=False):
        if field == "" and what != "stable version":
            numbers.append(None)
        elif what == "canary weight" and field.isdigit():
            numbers.append(int(field))
        elif not field.isdigit() or int(field) < 1:
            kind = "whole number" if what == "canary weight" else "version (1 or more)"
            raise UsageError(f"--model {text}: the {what} {field!r} is not a {kind}")
        else:
            numbers.append(int(field))
    stable, canary, weight = [*numbers, None, None, None][:3]
    if stable is None:
        raise UsageError(f"--model {text}: no stable version; give --model {text}:STABLE")
    return ServedModel(_named(name, "--model"), stable, canary, weight or 0)


def _named(name: str, option: str) -> str:
    """The name, if it can be a model's (else one line naming it and the rule)."""
    try:
        return check_model_name(name)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--name", option, 1)) from None


def _checked(where: str, model: ServedModel) -> ServedModel:
    """The model, if its canary and weight make sense (else one line starting `where`)."""
    if not 0 <= model.canary_weight <= 100:
        raise UsageError(f"{where}: the canary weight must be between 0 and 100")
    if model.canary_weight and model.canary is None:
        raise UsageError(f"{where}: a canary weight needs a canary")
    if model.canary is not None and model.canary == model.stable:
        raise UsageError(f"{where}: the canary must differ from stable")
    return model


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    stable: int = Field(ge=1)
    canary: int | None = Field(default=None, ge=1)
    canary_weight: int = Field(default=0, ge=0, le=100, alias="canaryWeight")


class _ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    models: list[_Entry] = Field(min_length=1)


def models_file(path: Path) -> tuple[ServedModel, ...]:
    """The models of a `--models` YAML file, checked as `--model` ones are."""
    where = f"--models {path}"
    try:
        data = yaml.safe_load(read_text(path, where))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(
            f"{where}: not valid YAML{at}: {getattr(exc, 'problem', None) or one_line(exc)}"
        ) from None
    try:
        parsed = _ModelsFile.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{where}: {describe_validation_errors(exc)}") from None
    found: list[ServedModel] = []
    for index, entry in enumerate(parsed.models):
        at = f"{where}: models.{index}"
        name = _named(entry.name, f"{at}.name")
        model = _checked(at, ServedModel(name, entry.stable, entry.canary, entry.canary_weight))
        if name in (m.name for m in found):
            raise UsageError(f"{at}: {name} is given twice")
        found.append(model)
    return tuple(found)
