"""Small models of the shapes people export: an MLP, a CNN, a two-input, two-output model.

Each factory seeds torch so that two calls build the same initial weights.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> nn.Module:
    """`INPUT__0:fp32:64` -> 10 logits."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class ConvNet(nn.Module):
    """`IMAGE:fp32:1x-1x-1`: a one-channel image of any size -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.features(image).mean(dim=(2, 3))
        logits: torch.Tensor = self.head(pooled)
        return logits


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet()


class TwoTower(nn.Module):
    """`dense:fp32:16` and `ids:int64:4` -> a score (1) and an embedding (8)."""

    def __init__(self, vocabulary: int = 100) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, 8)
        self.dense = nn.Linear(16, 8)
        self.score = nn.Linear(16, 1)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = torch.tanh(self.dense(dense) + self.embed(ids).mean(dim=1))
        features = torch.cat([embedding, self.dense(dense)], dim=1)
        return self.score(features), embedding


def two_tower() -> nn.Module:
    torch.manual_seed(0)
    return TwoTower()
