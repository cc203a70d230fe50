"""The main demo: the 8x8 digits with a small ConvNet and the whole recipe, logged to TensorBoard.

Scikit-learn ships the data (1,797 images of 10 digits); nothing is downloaded. The model is an
ordinary ``LightningModule``: the recipe comes entirely from the callbacks of
``recipe_callbacks("full")``.

    python examples/digits.py --logdir lightning_logs        # about a minute on a laptop CPU
    make tensorboard                                          # or .venv/bin/tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
import torchmetrics
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_recipe import recipe_callbacks
from lightning_recipe.dashboard import tensorboard_command


class DigitsData(LightningDataModule):
    """Digits split 80/20 (stratified, fixed), standardised with the training mean and std."""

    def __init__(self, batch_size: int = 64, limit: int | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.limit = limit

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[:, None]
        y = digits.target.astype(np.int64)
        x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
        mean, std = x_tr.mean(), x_tr.std()
        if self.limit:
            x_tr, y_tr, x_va, y_va = (
                x_tr[: self.limit],
                y_tr[: self.limit],
                x_va[: self.limit],
                y_va[: self.limit],
            )
        self.train_set = TensorDataset(torch.from_numpy((x_tr - mean) / std), torch.from_numpy(y_tr))
        self.val_set = TensorDataset(torch.from_numpy((x_va - mean) / std), torch.from_numpy(y_va))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


class DigitsConvNet(LightningModule):
    """A small ConvNet: two 3x3 convolutions, max-pool, a hidden layer with dropout, 10 logits."""

    def __init__(self, lr: float = 1e-3, channels: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * channels * 16, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, 10),
        )
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)  # "adam is safe"


def main(argv: Sequence[str] | None = None) -> Trainer:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="lightning_logs")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--fast", action="store_true", help="a few steps only (smoke test)")
    args = parser.parse_args(argv)

    callbacks = recipe_callbacks("full", seed=args.seed, monitor="val_loss")  # seeds: before the model
    model = DigitsConvNet()
    data = DigitsData(limit=256 if args.fast else None)
    logger = TensorBoardLogger(args.logdir, name="digits", default_hp_metric=False)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2 if args.fast else args.max_epochs,
        limit_train_batches=3 if args.fast else None,
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=5,
        enable_progress_bar=not args.fast,
        enable_model_summary=not args.fast,
        enable_checkpointing=False,
    )
    trainer.fit(model, data)
    print(f"\nTensorBoard logs written to {os.path.abspath(logger.log_dir)}")
    print(f"View them (no venv to activate):\n    {tensorboard_command(args.logdir)}")
    return trainer


if __name__ == "__main__":
    main(sys.argv[1:])
