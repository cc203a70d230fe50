"""OverfitBatchCheck when ``max_steps`` ends a loss that is still falling geometrically.

Healthy models that memorise more slowly than 300 steps (an autoencoder, per-pixel segmentation)
used to get a warn ("raise `max_steps`"); at the rate of their last steps they reach the target
within another ``max_steps``: a pass. A model whose output ignores its input also ends still
falling, but far too slowly: it keeps its warn.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lightning_recipe import OverfitBatchCheck
from lightning_recipe.core.checks.overfit_batch import steps_to_target
from tests.helpers import LitModel, digits_arrays, loader, make_trainer, mlp
from tests.zoo._models import SegNet, segmentation_loaders


class AutoEncoder(LitModel):
    """MSE reconstruction of ``[x]`` batches (no targets), the loss logged as ``loss``."""

    def __init__(self) -> None:
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU())
        super().__init__(
            nn.Sequential(net, nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 64), nn.Sigmoid()), lr=1e-3
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (x,) = batch
        loss = F.mse_loss(self(x), x.flatten(1))
        self.log("loss", loss)
        return loss


class IgnoresInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(64, 10, hidden=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.zeros_like(x))


def _overfit(tmp_path, model, data) -> Any:
    torch.manual_seed(0)
    check = OverfitBatchCheck()
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


def test_healthy_slow_memorisers_pass_and_an_input_blind_model_keeps_its_warn(tmp_path):
    x, y = digits_arrays()
    finding, losses = _overfit(tmp_path / "ae", AutoEncoder(), loader(x[:256], batch_size=32))
    assert finding.status == "pass", finding.message
    eta = steps_to_target(losses, finding.numbers["target_loss"], 50)
    assert eta is not None and (finding.numbers["lowest_loss"] <= finding.numbers["target_loss"] or eta < 250)

    finding, losses = _overfit(tmp_path / "seg", SegNet(), segmentation_loaders()[0])
    assert finding.status == "pass", finding.message

    finding, losses = _overfit(
        tmp_path / "blind", LitModel(IgnoresInput(), lr=1e-3), loader(x[:256], y[:256])
    )
    assert finding.status == "warn", finding.message
    eta = steps_to_target(losses, finding.numbers["target_loss"], 50)
    assert eta is None or eta > 10 * 300  # far beyond another max_steps
