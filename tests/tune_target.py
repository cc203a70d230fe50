"""Build functions for the tune tests (also imported by the command-line test's worker processes)."""

from __future__ import annotations

from typing import Any

from torch.nn import functional as F

from tests.helpers import LitModel, digits_arrays, loader, mlp

SPACE = {"lr": "log:1e-3:1e-1", "hidden": "int:4:16"}
TRAINER = {"accelerator": "cpu", "max_epochs": 2, "log_every_n_steps": 1, "num_sanity_val_steps": 0}


def _data() -> tuple[Any, Any]:
    x, y = digits_arrays()
    return loader(x[:128], y[:128], batch_size=64, shuffle=True), loader(
        x[1000:1128], y[1000:1128], batch_size=128
    )


def build(params: dict[str, Any]):
    """A small MLP on 128 digits; ``reduction="sum"`` sums the loss over the batch (a bug LossAtInitCheck finds)."""
    model = LitModel(mlp(64, 10, hidden=int(params.get("hidden", 8))), lr=float(params.get("lr", 1e-2)))
    if params.get("reduction") == "sum":
        model.loss_fn = lambda out, y: F.cross_entropy(out, y, reduction="sum")
    return model, _data(), dict(TRAINER)


class Constant(LitModel):
    """Logs ``val_loss = x`` at every validation: a trial's value is its parameter."""

    def __init__(self, x: float) -> None:
        super().__init__(mlp(64, 10, hidden=4))
        self.x = x

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.x)


def build_constant(params: dict[str, Any]):
    return Constant(float(params["x"])), _data(), {**TRAINER, "max_epochs": 3}
