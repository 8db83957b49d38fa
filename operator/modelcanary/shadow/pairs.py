"""What one mirrored request tells: its outputs compared by kind, its inputs added to a
window scored for drift. Pure numpy, on top of modelrepo.output_comparison and modelrepo.drift.

A pair is one sample answered by both versions: a request with a batch of 8 samples
makes 8 pairs per output. A classification pair agrees when both versions' top-1 classes
are equal; a numeric pair agrees when every element of the canary's answer is within the
comparison's tolerance (`|b - a| <= atol + rtol * |a|`) of stable's: the rollout's
`shadow.numeric` atol and rtol, each defaulting to `PARITY_MULTIPLE` times the canary's
export parity tolerance. Elementwise, for embeddings too: a vector is within when each of
its elements is, so a changed norm is caught as well as a changed direction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modelcanary.errors import UsageError
from modelcanary.modelrepo.drift import DriftReport, InputProfile, drift
from modelcanary.modelrepo.output_comparison import (
    OutputKind,
    compare_classification,
    samples_within,
)


class Incomparable(Exception):
    """Two answers, or an input and a profile, that do not fit each other (one line)."""


@dataclass(frozen=True)
class VersionPair:
    """What the comparator needs about a stable and canary version, from their manifests:
    the output kinds (the canary's, else stable's), the canary's tolerances, and stable's
    reference profile of the inputs (None: exported without one, drift not scored)."""

    kinds: Mapping[str, OutputKind]
    atol: float
    rtol: float
    profile: InputProfile | None


# What a version alike to stable (weights within 1e-4 of its own) differs by is about half
# of ten times the export's parity tolerance (1e-4, 1e-3 by default), which only covers
# the rounding of one graph against PyTorch: the default tolerance of a shadow comparison.
PARITY_MULTIPLE = 10.0


@dataclass(frozen=True)
class Tolerance:
    """How far a numeric answer of the canary may be from stable's: `atol + rtol * |a|`."""

    atol: float
    rtol: float

    @classmethod
    def of(cls, versions: VersionPair, atol: float | None, rtol: float | None) -> Tolerance:
        """The rollout's tolerance; an unset one is a multiple of the canary's export's."""
        return cls(
            versions.atol * PARITY_MULTIPLE if atol is None else atol,
            versions.rtol * PARITY_MULTIPLE if rtol is None else rtol,
        )


@dataclass(frozen=True)
class OutputPairs:
    """One output of one request: its pairs, those that agree, and (classification) the
    summed top-1 confidence of each version."""

    output: str
    kind: OutputKind
    pairs: int
    agreeing: int
    confidence_stable: float = 0.0
    confidence_canary: float = 0.0


def compare_answers(
    stable: Mapping[str, np.ndarray],
    canary: Mapping[str, np.ndarray],
    versions: VersionPair,
    tolerance: Tolerance,
) -> list[OutputPairs]:
    """Every output of stable's answer against the canary's, by its kind."""
    found = []
    for name, a in stable.items():
        if name not in canary:
            raise Incomparable(f"the canary's answer has no output {name!r}")
        b = canary[name]
        kind = versions.kinds.get(name, "numeric")
        try:
            if kind == "classification":
                c = compare_classification(name, a, b)
                found.append(
                    OutputPairs(
                        name,
                        kind,
                        c.samples,
                        round(c.agreement * c.samples),
                        c.confidence_a * c.samples,
                        c.confidence_b * c.samples,
                    )
                )
            else:
                within = samples_within(name, a, b, tolerance.atol, tolerance.rtol)
                found.append(OutputPairs(name, kind, len(a) if a.ndim else 1, within))
        except UsageError as exc:
            raise Incomparable(str(exc)) from None
    return found


class DriftWindow:
    """The last `size` live samples of a model's inputs, scored against a reference
    profile each time `every` new samples have arrived."""

    def __init__(self, profile: InputProfile, size: int, every: int) -> None:
        self.profile, self.size, self.every = profile, size, every
        self.batches: deque[tuple[int, dict[str, np.ndarray]]] = deque()
        self.samples = 0
        self.fresh = 0
        # elements per sample of each input profiled element by element
        self.widths = {
            name: sum(f.name.startswith(f"{name}[") for f in profile.features)
            for name, mode in profile.modes.items()
            if mode == "elements"
        }

    def add(self, inputs: Mapping[str, np.ndarray]) -> DriftReport | None:
        """Add one request's inputs; a fresh report when `every` samples came since the last."""
        batch, count = {}, None
        for name in self.profile.modes:
            if name not in inputs:
                raise Incomparable(f"the request has no input {name!r} of the reference profile")
            array = inputs[name]
            rows = len(array) if array.ndim else 0
            if count not in (None, rows) or rows == 0:
                raise Incomparable(
                    f"input {name!r} has shape {list(array.shape)}: no batch of samples"
                )
            width = self.widths.get(name)
            if width is not None and array[0].size != width:
                raise Incomparable(
                    f"input {name!r} has {array[0].size} elements per sample; "
                    f"the profile has {width}"
                )
            batch[name], count = array, rows
        if count is None:
            raise Incomparable("the reference profile names no input")
        self.batches.append((count, batch))
        self.samples += count
        self.fresh += count
        while self.samples - self.batches[0][0] >= self.size:
            self.samples -= self.batches.popleft()[0]
        if self.fresh < self.every:
            return None
        self.fresh = 0
        merged = {
            name: np.concatenate([b[name] for _, b in self.batches]) for name in self.profile.modes
        }
        return drift(self.profile, merged)
