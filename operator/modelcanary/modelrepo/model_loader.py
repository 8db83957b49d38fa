"""Load the PyTorch model named by `PKG.MODULE:CALLABLE`, with an optional state dict."""

from __future__ import annotations

import importlib
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import torch

from modelcanary.errors import UsageError, one_line


def load_model(reference: str, weights: Path | None, seed: int | None = None) -> torch.nn.Module:
    """Import the callable, call it (after seeding Python's, numpy's and torch's generators
    when `seed` is given), load the weights and return the module in eval mode."""
    factory = _import_callable(reference)
    if seed is not None:
        seed_generators(seed)
    try:
        model = factory()
    except Exception as exc:
        raise UsageError(f"--model {reference}: calling it failed: {one_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"--model {reference}: returned {type(model).__name__}, not a torch.nn.Module"
        )
    if weights is not None:
        _load_weights(model, weights)
    return model.eval()


def seed_generators(seed: int) -> None:
    """Seed every generator a model factory commonly draws from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _import_callable(reference: str) -> Callable[[], object]:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(
            f"--model {reference!r} is not PKG.MODULE:CALLABLE (e.g. modelcanary.examples.zoo:mlp)"
        )
    # Like `python -m`, models in the current directory are importable.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None:  # raised by the user's own code (transformers does): say its words
            raise UsageError(
                f"--model {reference}: importing {module_name!r} failed: {one_line(exc)}"
            ) from None
        raise UsageError(
            f"--model {reference}: module {exc.name!r} not found"
            + (f" (importing {module_name!r})" if exc.name != module_name else "")
        ) from None
    except Exception as exc:
        raise UsageError(
            f"--model {reference}: importing {module_name!r} failed: {one_line(exc)}"
        ) from None
    factory: object = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise UsageError(f"--model {reference}: {module_name!r} has no attribute {part!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise UsageError(f"--model {reference}: {attribute!r} is not callable")
    return cast(Callable[[], object], factory)


def _load_weights(model: torch.nn.Module, weights: Path) -> None:
    if not weights.is_file():
        raise UsageError(f"--weights {weights}: no such file")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(
            f"--weights {weights}: not a loadable state dict: {one_line(exc)}"
        ) from None
    if not isinstance(state, dict):
        raise UsageError(f"--weights {weights}: holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UsageError(
            f"--weights {weights} do not fit the model: {_state_dict_problem(exc)}"
        ) from None


def _state_dict_problem(exc: RuntimeError) -> str:
    """Condense torch's multi-line load_state_dict error into one line."""
    lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    return "; ".join(lines) if lines else one_line(exc)
