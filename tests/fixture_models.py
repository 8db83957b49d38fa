"""Models that misbehave in the ways `modelcanary export` must report clearly."""

from __future__ import annotations

from collections import OrderedDict

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


class ModelOutput(OrderedDict[str, torch.Tensor]):
    """Shaped like Hugging Face's `ModelOutput`: an ordered mapping of named tensors."""


class DictHeads(nn.Module):
    """Returns a mapping, as Hugging Face models do: `logits` then `embedding`."""

    def __init__(self, as_model_output: bool) -> None:
        super().__init__()
        self.encoder = nn.Linear(16, 8)
        self.head = nn.Linear(8, 3)
        self.as_model_output = as_model_output

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = torch.tanh(self.encoder(x))
        outputs = {"logits": self.head(embedding), "embedding": embedding}
        return ModelOutput(outputs) if self.as_model_output else outputs


def dict_heads() -> nn.Module:
    torch.manual_seed(0)
    return DictHeads(as_model_output=False)


def model_output_heads() -> nn.Module:
    torch.manual_seed(0)
    return DictHeads(as_model_output=True)


class NestedHeads(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, object]:
        return {"logits": x * 2, "hidden_states": (x, x)}


def nested_heads() -> nn.Module:
    return NestedHeads()


def unseeded_mlp() -> nn.Module:
    """Random initial weights that change from call to call unless the caller seeds."""
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class TokenClassifier(nn.Module):
    """Token ids and an attention mask of the same (variable) length, as a BERT classifier
    takes them: ids beyond the vocabulary or a mask of another length are the client's
    mistakes, which ONNX Runtime reports as an invalid argument or a failed broadcast."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(100, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def token_classifier() -> nn.Module:
    torch.manual_seed(0)
    return TokenClassifier()


def regressor() -> nn.Module:
    """A small regression model, 8 features to one value: the versions of the numeric
    shadow rollouts load weights derived from its seeded ones."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
