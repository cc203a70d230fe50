"""Tiny modules and data for the docstring examples (like ``lightning.pytorch.demos.boring_classes``).

Each example in the package's docstrings trains one of these on CPU in a second, so an example
shows the callback and nothing else.

* :class:`TinyClassifier`: a linear (or two-layer) softmax classifier on ``(x, y)`` batches,
  cross-entropy loss; ``weight_scale`` plants oversized final weights, ``lr`` sets SGD's rate.
* :class:`TinyRegressor`: a linear regressor with MSE; ``bias`` sets the final bias.
* :func:`classification_data` / :func:`regression_data`: seeded ``DataLoader`` s.
* :func:`tiny_trainer`: a quiet CPU ``Trainer`` (no logger, progress bar, summary or checkpoints).

Example:
    >>> trainer = tiny_trainer(max_steps=2, default_root_dir=getfixture("tmp_path"))
    >>> trainer.fit(TinyClassifier(), classification_data())
    >>> trainer.global_step
    2
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["TinyClassifier", "TinyRegressor", "classification_data", "regression_data", "tiny_trainer"]


class TinyClassifier(LightningModule):
    """A softmax classifier with ``in_features`` inputs and ``num_classes`` outputs.

    Args:
        in_features: input width.
        num_classes: number of classes.
        hidden: a hidden ReLU layer of this width (0: a linear model).
        weight_scale: multiplies the final layer's initial weights (100: far too confident logits).
        lr: SGD's learning rate.
    """

    def __init__(
        self,
        in_features: int = 8,
        num_classes: int = 10,
        hidden: int = 0,
        weight_scale: float = 1.0,
        lr: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_features, hidden), nn.ReLU()] if hidden else []
        self.head = nn.Linear(hidden or in_features, num_classes)
        with torch.no_grad():
            self.head.weight.mul_(weight_scale)
        self.net = nn.Sequential(*layers, self.head)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class TinyRegressor(TinyClassifier):
    """A linear regressor (MSE) with ``in_features`` inputs and one output; ``bias`` sets the final bias."""

    def __init__(
        self, in_features: int = 8, bias: float = 0.0, weight_scale: float = 1.0, lr: float = 0.01
    ) -> None:
        super().__init__(in_features, 1, weight_scale=weight_scale, lr=lr)
        with torch.no_grad():
            self.head.bias.fill_(bias)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x).squeeze(-1), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x).squeeze(-1), y))


def classification_data(
    n: int = 64, in_features: int = 8, num_classes: int = 10, batch_size: int = 32, seed: int = 0
) -> DataLoader:
    """Seeded Gaussian inputs with balanced labels ``arange(n) % num_classes``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_features, generator=g)
    return DataLoader(TensorDataset(x, torch.arange(n) % num_classes), batch_size=batch_size)


def regression_data(
    n: int = 64, in_features: int = 8, mean: float = 0.0, batch_size: int = 32, seed: int = 0
) -> DataLoader:
    """Seeded linear targets ``x @ w + mean`` plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_features, generator=g)
    y = x @ torch.randn(in_features, generator=g) + mean + 0.1 * torch.randn(n, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def tiny_trainer(**kwargs: Any) -> Trainer:
    """A quiet CPU ``Trainer``: no logger, progress bar, model summary or checkpoints unless asked."""
    defaults: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "limit_val_batches": 0,
    }
    return Trainer(**{**defaults, **kwargs})
