"""Per-step cost of ``UpdateHealth`` at its default cadence, on the digits with a small CNN.

Runs real ``Trainer`` fits on scikit-learn's 8x8 digits (a 4-block conv net with batch norm and
ReLU, 10 parametric layers) and prints:

* the wall time per training step without the callback, with ``UpdateHealth()`` (a check every
  50 steps, a figure every 500) and with a check on every step, and the ratios;
* the time the training loop spends inside the callback's hooks on an unscheduled step and on a
  scheduled check (measured around each hook), and the amortised cost per step at the default
  cadence.

Run: ``python benchmarks/update_health_overhead.py [--steps 300] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.update_health import UpdateHealth

HOOKS = ("on_train_batch_start", "on_before_backward", "on_before_optimizer_step", "on_train_batch_end")


class Digits(LightningModule):
    def __init__(self, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        self.net = nn.Sequential(
            block(1, width),
            block(width, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(2 * width, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


class StepClock(Callback):
    """Wall time from each batch start to the next (the whole training step)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t: float | None = None

    def on_train_batch_start(self, *args: Any) -> None:
        now = time.perf_counter()
        if self._t is not None:
            self.times.append(now - self._t)
        self._t = now


def data(batch_size: int = 64) -> DataLoader:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target, dtype=torch.long)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)


def fit(steps: int, callbacks: list[Callback], root: str) -> StepClock:
    seed_everything(0, verbose=False)
    clock = StepClock()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
        callbacks=[clock, *callbacks],
    )
    trainer.fit(Digits(), data())
    recipe_logging.drain()
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    configs = {
        "bare": lambda: [],
        "UpdateHealth() (every 50 steps)": lambda: [UpdateHealth()],
        "UpdateHealth(every_n_train_steps=1)": lambda: [
            UpdateHealth(every_n_train_steps=1, figure_every_n_train_steps=None)
        ],
    }
    per_step: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as root:
        fit(20, [], root)  # warm up imports and kernels
        for _ in range(args.repeats):
            for name, make in configs.items():
                clock = fit(args.steps, make(), root)
                per_step[name].append(statistics.median(clock.times))

        # time inside the hooks, by step kind (default cadence)
        health = UpdateHealth()
        spent: dict[str, list[float]] = {"scheduled": [], "unscheduled": []}
        for name in HOOKS:
            original = getattr(health, name)

            def timed(*a: Any, _original=original, _name=name, **kw: Any) -> None:
                trainer = a[0]
                step = int(trainer.global_step)
                if _name == "on_train_batch_end":
                    step = health._batch_step
                t = time.perf_counter()
                _original(*a, **kw)
                health._hook_time[step] = health._hook_time.get(step, 0.0) + time.perf_counter() - t

            setattr(health, name, timed)
        health._hook_time = {}
        health._batch_step = 0
        start = health.on_train_batch_start

        def remember(trainer: Trainer, *a: Any) -> None:
            health._batch_step = int(trainer.global_step)
            start(trainer, *a)

        health.on_train_batch_start = remember
        fit(args.steps, [health], root)
        for step, seconds in health._hook_time.items():
            spent["scheduled" if step % health.every_n_train_steps == 0 else "unscheduled"].append(seconds)

    bare = statistics.median(per_step["bare"])
    print(
        f"UpdateHealth overhead, {args.steps} steps x {args.repeats} repeats, digits CNN (10 layers), 1 thread"
    )
    print(f"{'configuration':40s} {'ms/step':>9s} {'ratio':>7s}")
    for name, values in per_step.items():
        ms = statistics.median(values) * 1e3
        print(f"{name:40s} {ms:9.3f} {statistics.median(values) / bare:7.3f}")
    sched = statistics.median(spent["scheduled"]) * 1e3
    unsched = statistics.median(spent["unscheduled"]) * 1e6
    n = health.every_n_train_steps
    amortised = (sched * 1e3 + (n - 1) * unsched) / n
    print(f"hooks on an unscheduled step: {unsched:.1f} us (median of {len(spent['unscheduled'])})")
    print(
        f"hooks on a scheduled check:   {sched:.2f} ms (median of {len(spent['scheduled'])}; figure rendered off-thread)"
    )
    print(
        f"amortised at every_n_train_steps={n}: {amortised:.1f} us/step = {amortised / (bare * 1e6):.2%} of a bare step"
    )


if __name__ == "__main__":
    main()
