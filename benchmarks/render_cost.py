"""Cost per logged step of the "seeing" callbacks' pictures, on the digits with a small CNN.

Runs a real ``Trainer`` on scikit-learn's 8x8 digits (scaled /16) with ``PredictionDynamics``,
``FirstLayerFilters`` and ``BatchInspector``, and prints, per callback:

* the time the training loop spends in the callback's hook on a logged step (what the user waits);
* the time to render its figures (on the background thread for figure builders);
* the hook's cost on an unscheduled step.

``--save-images DIR`` also writes the last picture of each callback as a PNG (the README images:
``python benchmarks/render_cost.py --save-images docs/images``).

Run: ``python benchmarks/render_cost.py [--epochs 6] [--save-images docs/images]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lightning.pytorch import LightningModule, Trainer, seed_everything

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.batch_inspector import BatchInspector
from lightning_recipe.callbacks.first_layer import FirstLayerFilters
from lightning_recipe.callbacks.prediction_dynamics import PredictionDynamics


class Digits(LightningModule):
    def __init__(self, channels: int = 16, lr: float = 3e-3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(channels * 16, 10),
        )
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def digits_loaders() -> tuple[DataLoader, DataLoader]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    tr, va = perm[:1500], perm[1500:]
    train = DataLoader(TensorDataset(x[tr], y[tr]), batch_size=32, shuffle=True, generator=g)
    val = DataLoader(TensorDataset(x[va], y[va]), batch_size=128)
    return train, val


class Timed:
    """Wrap a callback's hooks to time them (the training loop's view)."""

    def __init__(self, callback: Any, hooks: tuple[str, ...]) -> None:
        self.times: dict[str, list[tuple[bool, float]]] = {h: [] for h in hooks}
        for hook in hooks:
            original = getattr(callback, hook)

            def timed(*args: Any, _orig: Any = original, _hook: str = hook, **kw: Any) -> Any:
                before = len(recipe_logging._renderer._queue.queue)
                t0 = time.perf_counter()
                out = _orig(*args, **kw)
                dt = time.perf_counter() - t0
                self.times[_hook].append((len(recipe_logging._renderer._queue.queue) != before, dt))
                return out

            setattr(callback, hook, timed)


def render_time(builder_source: Any, repeat: int = 3) -> float:
    from lightning_recipe.plots.style import figure_to_array

    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        figure_to_array(builder_source())
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--save-images", default=None, help="folder to write the reference PNGs to")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    seed_everything(0, verbose=False)
    train, val = digits_loaders()
    dynamics = PredictionDynamics(num_samples=16, every_n_train_steps=25)
    filters = FirstLayerFilters(every_n_epochs=1)
    inspector = BatchInspector(every_n_train_steps=100, num_samples=32)
    timers = {
        "PredictionDynamics": Timed(dynamics, ("on_train_batch_end",)),
        "FirstLayerFilters": Timed(filters, ("on_train_batch_start", "on_train_epoch_end")),
        "BatchInspector": Timed(inspector, ("on_train_batch_start",)),
    }
    root = tempfile.mkdtemp(prefix="render_cost_")
    recipe_logging.set_async_rendering(False)  # synchronous: the hook time includes rendering
    trainer = Trainer(
        max_epochs=args.epochs,
        logger=False,
        callbacks=[dynamics, filters, inspector],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
        num_sanity_val_steps=0,
    )
    t0 = time.perf_counter()
    trainer.fit(Digits(), train, val)
    total = time.perf_counter() - t0
    recipe_logging.drain()
    steps = trainer.global_step
    print(
        f"digits, small CNN, {args.epochs} epochs, {steps} steps, {total:.1f} s total (synchronous rendering)"
    )
    print(f"{'callback / hook':<46} {'logged steps':>12} {'ms/logged':>10} {'ms/other':>9}")
    for name, timer in timers.items():
        for hook, rows in timer.times.items():
            # a call that queued a figure, or took over 1 ms (synchronous images), did the logging
            logged = [dt for busy, dt in rows if busy or dt > 1e-3]
            other = [dt for busy, dt in rows if not busy and dt <= 1e-3]
            ms_logged = 1e3 * float(np.median(logged)) if logged else float("nan")
            ms_other = 1e3 * float(np.median(other)) if other else float("nan")
            print(f"{name + '.' + hook:<46} {len(logged):>12} {ms_logged:>10.1f} {ms_other:>9.3f}")
    for name, finding_list in (
        ("PredictionDynamics", dynamics.findings),
        ("FirstLayerFilters", filters.findings),
        ("BatchInspector", inspector.findings),
    ):
        for f in finding_list:
            print(f"  {name}: [{f.status}] {f.message}")
    folder = os.path.join(root, "lightning_logs", "version_0", "recipe")
    if not os.path.isdir(folder):
        folder = os.path.join(root, "recipe")
    if args.save_images:
        os.makedirs(args.save_images, exist_ok=True)
        picks = {
            "prediction_dynamics.png": ("prediction_dynamics", "trajectories"),
            "prediction_dynamics_predictions.png": ("prediction_dynamics", "predictions"),
            "first_layer_filters.png": ("first_layer", "filters"),
            "batch_inspector.png": ("batch_inspector", "images"),
        }
        for out_name, parts in picks.items():
            src = _find_folder(root, parts)
            if src is None:
                print(f"  no images for {'/'.join(parts)}")
                continue
            last = sorted(os.listdir(src))[-1]
            shutil.copy(os.path.join(src, last), os.path.join(args.save_images, out_name))
            print(f"  wrote {os.path.join(args.save_images, out_name)} (from {last})")
            if parts == ("first_layer", "filters"):
                first = sorted(os.listdir(src))[0]
                shutil.copy(
                    os.path.join(src, first), os.path.join(args.save_images, "first_layer_filters_init.png")
                )
    shutil.rmtree(root, ignore_errors=True)


def _find_folder(root: str, parts: tuple[str, ...]) -> str | None:
    for dirpath, _, files in os.walk(root):
        if dirpath.endswith(os.path.join(*parts)) and any(f.endswith(".png") for f in files):
            return dirpath
    return None


if __name__ == "__main__":
    main()
