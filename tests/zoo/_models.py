"""Zoo 3 models shared by the tests in this folder: written the way users write them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from tests.helpers import digits_arrays


class Dicts(Dataset):
    def __init__(self, **cols: np.ndarray) -> None:
        self.cols = {k: torch.as_tensor(v) for k, v in cols.items()}

    def __len__(self) -> int:
        return len(next(iter(self.cols.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.cols.items()}


def segmentation_loaders(n: int = 512) -> tuple[DataLoader, DataLoader]:
    """Digits upsampled to 16x16; per-pixel class: ink in the left half 1, ink in the right half 2, else 0."""
    x, _ = digits_arrays()
    img = F.interpolate(torch.as_tensor(x[:n].reshape(-1, 1, 8, 8)), size=16, mode="bilinear").numpy()
    ink = img[:, 0] > 0.3
    left = np.zeros((16, 16), bool)
    left[:, :8] = True
    mask = np.where(ink & left, 1, np.where(ink, 2, 0)).astype(np.int64)
    k = int(0.8 * n)
    return (
        DataLoader(Dicts(image=img[:k], mask=mask[:k]), batch_size=32, shuffle=True),
        DataLoader(Dicts(image=img[k:], mask=mask[k:]), batch_size=64),
    )


class SegNet(LightningModule):
    """Per-pixel classification, ``{"image", "mask"}`` batches, ``nn.CrossEntropyLoss`` in the module."""

    def __init__(self, softmax_bug: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 3, 1),
        )
        self.crit = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.softmax(1) if self.hparams.softmax_bug else out  # the bug: softmax before the CE

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.crit(self(batch["image"]), batch["mask"])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self.crit(self(batch["image"]), batch["mask"]))

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def pair_loaders(n: int = 512) -> tuple[DataLoader, DataLoader]:
    """Batches of pairs ``(view1, view2)`` of the same digits (noise; a one-pixel shift): no targets."""
    x, _ = digits_arrays()
    x = x[:n].reshape(-1, 8, 8)
    g = np.random.default_rng(0)
    v1 = (x + 0.1 * g.standard_normal(x.shape)).astype(np.float32)
    v2 = (np.roll(x, 1, axis=2) + 0.1 * g.standard_normal(x.shape)).astype(np.float32)
    k = int(0.8 * n)
    make = lambda a, b, shuffle: DataLoader(  # noqa: E731
        torch.utils.data.TensorDataset(torch.as_tensor(a), torch.as_tensor(b)), batch_size=32, shuffle=shuffle
    )
    return make(v1[:k], v2[:k], True), make(v1[k:], v2[k:], False)


class Contrastive(LightningModule):
    """InfoNCE between the two views; ``temperature=5`` is the bug (logits within +-0.2: a floor near ln N)."""

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = temperature
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.enc(x), dim=-1)

    def _loss(self, batch: Any) -> torch.Tensor:
        a, b = batch
        logits = self(a) @ self(b).T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(a), device=a.device))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), 1e-3)
