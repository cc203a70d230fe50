"""The "hockey stick": breast cancer made 1:10 imbalanced, trained with and without FinalBiasInit.

Scikit-learn's breast-cancer data (569 tumours, 30 features) with the malignant class subsampled
so that there is one malignant tumour for every ten benign ones. A one-logit classifier (sigmoid +
BCE) starts at p = 0.5 with PyTorch's default zero bias and spends its first steps learning that
positives are rare: the hockey stick the recipe warns about. ``FinalBiasInit`` sets the bias to
log(p / (1 - p)) before the first step, so the curve starts at the prior's entropy instead.

Two runs, same seed, same model, side by side in TensorBoard (``imbalanced/without_bias_init``
and ``imbalanced/with_bias_init``); the loss over the first steps of each is printed.

    python examples/imbalanced.py --logdir lightning_logs
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

from lightning_recipe import FinalBiasInit, FixedSeed, LossAtInitCheck, RecipeReport, TrainingLossCheck
from lightning_recipe.dashboard import tensorboard_command


def imbalanced_breast_cancer(ratio: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features; label 1 = malignant, subsampled to one per ``ratio`` benign."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = (data.target == 0).astype(np.float32)  # scikit-learn: 0 = malignant
    rng = np.random.default_rng(seed)
    benign = np.flatnonzero(y == 0)
    malignant = rng.choice(np.flatnonzero(y == 1), size=len(benign) // ratio, replace=False)
    keep = np.sort(np.concatenate([benign, malignant]))
    return x[keep], y[keep]


class TumourClassifier(LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1))
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self(x), y)
        self.losses.append(float(loss))
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def run(bias_init: bool, logdir: str, seed: int, epochs: int) -> list[float]:
    x, y = imbalanced_breast_cancer()
    callbacks = [FixedSeed(seed), LossAtInitCheck(), TrainingLossCheck(), RecipeReport(print_summary=False)]
    if bias_init:
        callbacks.insert(1, FinalBiasInit())
    model = TumourClassifier()  # after FixedSeed: both runs start from the same weights
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16, shuffle=True)
    name = "with_bias_init" if bias_init else "without_bias_init"
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        callbacks=callbacks,
        logger=TensorBoardLogger(logdir, name="imbalanced", version=name, default_hp_metric=False),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, loader)
    return model.losses


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="lightning_logs")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--first-steps", type=int, default=20)
    args = parser.parse_args(argv)

    losses = {
        name: run(flag, args.logdir, args.seed, args.epochs)
        for name, flag in (("without", False), ("with", True))
    }
    k = args.first_steps
    print(f"\nmean training loss over the first {k} steps (same seed, same model):")
    for name in ("without", "with"):
        first = losses[name][:k]
        print(
            f"  {name:>7} FinalBiasInit: step 0 {first[0]:.3f}, mean {np.mean(first):.3f}, last {first[-1]:.3f}"
        )
    ratio = np.mean(losses["without"][:k]) / np.mean(losses["with"][:k])
    print(f"  the default zero bias costs {ratio:.2f}x the loss over the first {k} steps")
    print(
        f"View both runs (no venv to activate):\n    {tensorboard_command(os.path.join(args.logdir, 'imbalanced'))}"
    )
    return losses


if __name__ == "__main__":
    main(sys.argv[1:])
