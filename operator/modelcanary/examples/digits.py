"""The demo's model: a digit classifier trained in seconds on scikit-learn's digits.

The data set ships inside scikit-learn (8x8 images, 1,797 samples), so nothing is
downloaded. Version 1 is a short training run (about 91% held-out accuracy); version 2
is retrained longer from another seed (about 98%); version 3 is a third candidate, the one
the demo breaks at run time with injected errors and latency. Versions 4 and 5 carry
training bugs that serve without a single error: 4 learned every label shifted by one
(0 -> 1, ..., 9 -> 0; 0.3%), 5 learned 3 and 8 swapped (about 76%). All have the signature
`pixels:fp32:64 -> logits:fp32:10` and are exported through `modelcanary export` with the
360 held-out digits and their true labels as the holdout (metric: accuracy; `logits` is a
classification output), the first 32 of them as golden samples.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from modelcanary.modelrepo.exporter import ExportRequest, ExportResult, export
from modelcanary.modelrepo.holdout import Metric
from modelcanary.modelrepo.holdout_store import Declarations
from modelcanary.modelrepo.model_config import ServingOptions
from modelcanary.modelrepo.tensorspec import parse_input_spec

NAME = "digits"
INPUT = "pixels:fp32:64"
OUTPUT = "logits"
FACTORY = "modelcanary.examples.digits:classifier"
HOLDOUT = 360
CLASSES = tuple(range(10))


@dataclass(frozen=True)
class Recipe:
    """How one version is trained; `relabel[c]` is the label class c is trained as."""

    version: int
    seed: int
    epochs: int
    relabel: tuple[int, ...] = CLASSES
    bug: str = ""


RECIPES = (
    Recipe(version=1, seed=1, epochs=15),
    Recipe(version=2, seed=2, epochs=200),
    Recipe(version=3, seed=3, epochs=150),
    Recipe(4, 4, 100, tuple((c + 1) % 10 for c in CLASSES), "labels shifted by one"),
    Recipe(5, 5, 100, (0, 1, 2, 8, 4, 5, 6, 7, 3, 9), "labels 3 and 8 swapped"),
)


def classifier() -> nn.Module:
    """The architecture shared by every version: 64 pixels -> 64 hidden -> 10 logits."""
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and held-out split, pixels scaled to [0, 1], in a fixed order."""
    digits = load_digits()
    pixels = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    pixels, labels = pixels[order], labels[order]
    return pixels[HOLDOUT:], labels[HOLDOUT:], pixels[:HOLDOUT], labels[:HOLDOUT]


def train(recipe: Recipe) -> tuple[dict[str, torch.Tensor], float]:
    """Train one version; return its state dict and its held-out accuracy (true labels)."""
    with _one_thread():
        return _train(recipe)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Full-batch steps this small run fastest on one thread: 0.4 s instead of several
    seconds for 200 epochs when two threads compete for two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(recipe: Recipe) -> tuple[dict[str, torch.Tensor], float]:
    train_x, train_y, test_x, test_y = dataset()
    train_y = np.array(recipe.relabel)[train_y]
    torch.manual_seed(recipe.seed)
    model = classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    for _ in range(recipe.epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = model(torch.from_numpy(test_x)).argmax(dim=1).numpy()
    return model.state_dict(), float((predicted == test_y).mean())


def build(
    repo: Path, force: bool = False, say: Callable[[str], None] = print
) -> list[ExportResult]:
    """Train and export every version that the repository does not have yet."""
    results = []
    _, _, test_x, test_y = dataset()
    with tempfile.TemporaryDirectory(prefix="modelcanary-digits-") as work:
        samples = Path(work) / "samples.npz"
        np.savez(samples, pixels=test_x, labels=test_y)
        for recipe in RECIPES:
            if (repo / NAME / str(recipe.version)).exists() and not force:
                say(f"{NAME}:{recipe.version} is already in {repo}; skipped (--force rebuilds)")
                continue
            state, accuracy = train(recipe)
            weights = Path(work) / f"digits-v{recipe.version}.pt"
            torch.save(state, weights)
            bug = f" (trained with {recipe.bug})" if recipe.bug else ""
            say(f"trained {NAME}:{recipe.version}{bug}: held-out accuracy {accuracy:.3f}")
            facts = {"accuracy": f"{accuracy:.4f}", "epochs": str(recipe.epochs)}
            request = ExportRequest(
                model=FACTORY,
                name=NAME,
                inputs=(parse_input_spec(INPUT),),
                output_names=(OUTPUT,),
                weights=weights,
                version=recipe.version,
                options=ServingOptions(
                    max_batch_size=32,
                    dynamic_batching=True,
                    preferred_batch_sizes=(8, 16, 32),
                    max_queue_delay_us=500,
                ),
                repo=repo,
                golden_samples=32,
                samples_file=samples,
                labels=facts | ({"bug": recipe.bug} if recipe.bug else {}),
                declarations=Declarations(
                    kinds={OUTPUT: "classification"},
                    labels_key="labels",
                    metrics={OUTPUT: Metric("accuracy")},
                ),
                force=force,
            )
            results.append(export(request, say))
    return results
