"""A Hugging Face style module for the checks that call the model outside the user's step.

``forward(**batch)`` takes the whole dict batch ``{"x", "labels"}`` and returns
``{"loss", "logits"}``; ``training_step`` returns ``out["loss"]``. Nothing tells a check how to
call it: ``core.model_call.ModelCall`` must find ``module(**batch)`` by itself.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset


class KwargsClassifier(LightningModule):
    def __init__(self, in_features: int = 64, num_classes: int = 10, lr: float = 1e-2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, 32), nn.ReLU(), nn.Linear(32, num_classes)
        )
        self.lr = lr

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(batch["x"])
        return {"loss": F.cross_entropy(logits, batch["labels"]), "logits": logits}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(**batch)["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self(**batch)["loss"])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class _DictDataset(Dataset):
    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def dict_loader(x: Any, y: Any, batch_size: int = 32, shuffle: bool = False) -> DataLoader:
    """Dict batches ``{"x": (N, ...), "labels": (N,)}``."""
    return DataLoader(_DictDataset(x, y), batch_size=batch_size, shuffle=shuffle)
