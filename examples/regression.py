"""Regression on scikit-learn's diabetes data (target mean ~152): bias at the mean, loss at init vs Var(y).

The recipe: *"if you are regressing some values that have a mean of 50 then initialize the final
bias to 50"*. With PyTorch's default (near-zero) bias the MSE at init is about E[y^2] ~ 29,000;
``FinalBiasInit`` sets the bias to the target mean and the loss at init drops to about
Var(y) ~ 5,900, which ``LossAtInitCheck`` verifies.

    python examples/regression.py --logdir lightning_logs
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_recipe import FinalBiasInit, FixedSeed, LossAtInitCheck, RecipeReport
from lightning_recipe.dashboard import tensorboard_command


class DiabetesRegressor(LightningModule):
    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main(argv: Sequence[str] | None = None) -> LossAtInitCheck:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="lightning_logs")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)

    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x = data.data.astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = data.target.astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, val = order[:350], order[350:]

    seed = FixedSeed(args.seed)
    check = LossAtInitCheck()
    model = DiabetesRegressor()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=args.epochs,
        callbacks=[seed, FinalBiasInit(), check, RecipeReport(print_summary=False)],
        logger=TensorBoardLogger(args.logdir, name="regression", default_hp_metric=False),
        log_every_n_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(
        model,
        DataLoader(
            TensorDataset(torch.from_numpy(x[train]), torch.from_numpy(y[train])), batch_size=32, shuffle=True
        ),
        DataLoader(TensorDataset(torch.from_numpy(x[val]), torch.from_numpy(y[val])), batch_size=128),
    )
    y_train = y[train].astype(np.float64)
    print(f"\ntarget mean {y_train.mean():.1f}, E[y^2] {np.mean(y_train**2):.0f}, Var(y) {y_train.var():.0f}")
    print(f"final bias after FinalBiasInit: {model.net[-1].bias.item():.1f} (after training)")
    for finding in check.findings:
        print(f"LossAtInitCheck [{finding.status}]: {finding.message}")
    print(
        f"View the run (no venv to activate):\n    {tensorboard_command(os.path.join(args.logdir, 'regression'))}"
    )
    return check


if __name__ == "__main__":
    main(sys.argv[1:])
