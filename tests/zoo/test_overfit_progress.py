"""OverfitBatchCheck on healthy models that memorise more slowly than ``max_steps``.

Without targets (a multi-task model whose dict batch has no key read as the target) the lowest
achievable loss is unknown: ending 98% below the start passes (it warned "raise `max_steps`").
A loss still falling geometrically is extrapolated (:func:`steps_to_target`): a model whose output
ignores its input also ends still falling, but far too slowly for another ``max_steps``: it keeps
its warn.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from lightning_recipe import OverfitBatchCheck
from lightning_recipe.core.checks.overfit_batch import steps_to_target
from tests.helpers import LitModel, digits_arrays, loader, make_trainer, mlp
from tests.zoo._models import Dicts


class MultiTask(LightningModule):
    """Two heads in a dict (the digit, and whether it is above 4), dict batches: no key reads as the target."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
        self.digit, self.big = nn.Linear(64, 10), nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x)
        return {"digit": self.digit(h), "big": self.big(h).squeeze(-1)}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self(batch["x"])
        loss = F.cross_entropy(out["digit"], batch["digit"])
        loss = loss + F.binary_cross_entropy_with_logits(out["big"], batch["big"])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), 1e-3)


def multitask_loader() -> DataLoader:
    x, y = digits_arrays()
    data = Dicts(x=x[:512, 0], digit=y[:512], big=(y[:512] > 4).astype(np.float32))
    return DataLoader(data, batch_size=32, shuffle=True)


class IgnoresInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(64, 10, hidden=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.zeros_like(x))


def _overfit(tmp_path, model, data, max_steps: int = 300) -> Any:
    torch.manual_seed(0)
    check = OverfitBatchCheck(max_steps=max_steps)
    trainer = make_trainer(tmp_path, [check], max_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    [finding] = check.findings
    return finding, check.losses


def test_steps_to_target_extrapolates_the_log_rate():
    assert steps_to_target([0.99**k for k in range(200)], 0.99**300, patience=50) == 101
    assert steps_to_target([1.0] * 200, 0.5, patience=50) is None  # flat: no rate
    assert steps_to_target([1.0, 0.5], 0.1, patience=50) is None  # too short


def test_a_memoriser_without_targets_passes_and_an_input_blind_model_keeps_its_warn(tmp_path):
    # no key reads as the target: 98% below its start is memorised (the floor is unknown)
    finding, _ = _overfit(tmp_path / "multitask", MultiTask(), multitask_loader(), max_steps=200)
    assert finding.status == "pass" and "no targets found" in finding.message, finding.message
    assert finding.numbers["lowest_loss"] < 0.05 / 2 * finding.numbers["initial_loss"]  # UNKNOWN_FLOOR 0.05

    x, y = digits_arrays()
    finding, losses = _overfit(
        tmp_path / "blind", LitModel(IgnoresInput(), lr=1e-3), loader(x[:256], y[:256])
    )
    assert finding.status == "warn", finding.message
    eta = steps_to_target(losses, finding.numbers["target_loss"], 50)
    assert eta is None or eta > 10 * 300  # far beyond another max_steps
