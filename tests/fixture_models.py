"""Models that misbehave in the ways `modelcanary export` must report clearly."""

from __future__ import annotations

import torch
from torch import nn


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.export cannot capture it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([float(v) for v in x.sum(dim=1).tolist()])


def unexportable() -> nn.Module:
    return DataDependent()


class Drifting(nn.Module):
    """Scales by how often it was called: the exported graph freezes one count, so
    ONNX Runtime and PyTorch disagree by far more than any tolerance."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x) * float(self.calls)


def drifting() -> nn.Module:
    torch.manual_seed(0)
    return Drifting()


def not_a_module() -> object:
    return {"weights": [1, 2, 3]}


def broken_factory() -> nn.Module:
    raise RuntimeError("factory exploded")


def wider_mlp() -> nn.Module:
    """Same input as zoo.mlp but 12 outputs: a different signature."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 12))
