"""Overhead of the recipe suite: the digits demo (or a longer run) with and without ``recipe_callbacks``.

Alternates, ``--repeats`` times, a bare ``Trainer``, one with the whole ``recipe_callbacks(--stage)``
and one with its periodic callbacks only (the one-time checks left out), all with the same
TensorBoard logger, in one process, and prints min and median wall times and their ratios to the
bare run of the same round. Per callback it prints what ``RecipeReport`` metered in the suite
(seconds before training, during training and in figures: the median over the rounds) and, with
``--alone``, the wall time of a run with that callback alone minus the bare run next to it. The
memory column is the growth of the resident set over the run (``/proc/self/statm``); ``--memory``
also runs the periodic callbacks for half the epochs to show that it does not grow with the run.

Torch runs on ``--threads`` threads (default 1: on a shared machine, more threads than free cores
make every run noisy); figures are drawn where ``lightning_recipe.writer`` draws them (inline by
default; ``LIGHTNING_RECIPE_RENDER=thread`` or ``=process`` to compare).

    python benchmarks/overhead.py [--epochs 30] [--repeats 3] [--stage full] [--alone] [--memory]
    python benchmarks/overhead.py --long          # a wider CNN on the digits upscaled to 32x32, 50 epochs: 2+ min bare

The last line projects the bare run length from which the whole suite stays within 1.03x: the
one-time seconds do not grow with the run (past the budget's floor they stop at their verdicts),
the periodic ones do, so ``T >= one-time s / (0.03 - periodic share)`` (the one-time seconds as
metered, the periodic share as measured against the bare run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

from digits import DigitsConvNet, DigitsData

from lightning_recipe import recipe_callbacks
from lightning_recipe import writer as recipe_logging
from lightning_recipe.presets import STAGES

#: Checks that run once, before or at the start of training (their cost does not grow with the run).
ONE_TIME = (
    "DataInspector",
    "FinalBiasInit",
    "LossAtInitCheck",
    "BatchIndependenceCheck",
    "OverfitBatchCheck",
    "InputIndependentBaseline",
    "LRScheduleAudit",
)


class UpscaledDigits(DigitsData):
    """The digits upscaled to 32x32 (bilinear): a longer, more realistic run for the same data."""

    def setup(self, stage: str) -> None:
        super().setup(stage)
        for name in ("train_set", "val_set"):
            x, y = getattr(self, name).tensors
            up = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
            setattr(self, name, torch.utils.data.TensorDataset(up.contiguous(), y))


class WiderConvNet(DigitsConvNet):
    """A small ResNet-like CNN (conv-BN-ReLU blocks, two stages) for 32x32 inputs."""

    def __init__(self, lr: float = 1e-3, channels: int = 32) -> None:
        super().__init__(lr=lr, channels=channels)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        c = channels
        self.net = nn.Sequential(
            block(1, c), block(c, c), nn.MaxPool2d(2),
            block(c, 2 * c), block(2 * c, 2 * c), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(2 * c, 10),
        )  # fmt: skip


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def run(
    suite: tuple[str, ...] | None, epochs: int, stage: str, root: str, long: bool
) -> tuple[float, float, dict[str, Any]]:
    """One fit; ``suite``: the callbacks to keep (``None``: bare). Returns seconds, RSS growth, cost."""
    torch.manual_seed(0)
    # EarlyStopping may not end the suite's run sooner than the bare one: both train all epochs
    overrides = {"RecipeReport": {"print_summary": False}, "EarlyStopping": {"patience": 10**6}}
    callbacks: list[Any] = []
    if suite is not None:
        callbacks = recipe_callbacks(stage, seed=0, overrides=overrides)
        callbacks = [
            cb for cb in callbacks if type(cb).__name__ in suite or type(cb).__name__ == "RecipeReport"
        ]
    model: LightningModule = WiderConvNet() if long else DigitsConvNet()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        callbacks=callbacks,
        logger=TensorBoardLogger(root, name="suite" if suite is not None else "bare"),
        log_every_n_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    before = rss_mb()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, UpscaledDigits() if long else DigitsData())
        recipe_logging.drain()
    seconds = time.perf_counter() - start
    report = next((cb for cb in callbacks if type(cb).__name__ == "RecipeReport"), None)
    return seconds, rss_mb() - before, dict(getattr(report, "cost", None) or {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: 30 (digits), 50 (--long)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stage", default="full")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--long", action="store_true", help="a wider CNN on 32x32 digits (2+ min bare)")
    parser.add_argument("--alone", action="store_true", help="also time each callback alone (one run each)")
    parser.add_argument(
        "--memory", action="store_true", help="also run the periodic callbacks for half the epochs"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (50 if args.long else 30)
    names = tuple(STAGES[args.stage])
    variants: dict[str, tuple[str, ...] | None] = {
        "bare Trainer": None,
        "whole suite": names,
        "periodic only": tuple(n for n in names if n not in ONE_TIME),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    memory: dict[str, list[float]] = {name: [] for name in variants}
    costs: list[dict[str, Any]] = []
    alone: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        run(names, 1, args.stage, root, args.long)  # warm-up: imports (matplotlib too), data loading
        for _ in range(args.repeats):
            bare = None
            for name, suite in variants.items():
                seconds, grown, cost = run(suite, epochs, args.stage, root, args.long)
                bare = seconds if suite is None else bare
                times[name].append(seconds)
                ratios[name].append(seconds / bare)
                memory[name].append(grown)
                if name == "whole suite":
                    costs.append(cost)
        if args.alone:
            for name in names:
                base, _, _ = run(None, epochs, args.stage, root, args.long)
                seconds, _, _ = run((name,), epochs, args.stage, root, args.long)
                alone[name] = seconds - base
        half = None
        if args.memory:
            half = run(variants["periodic only"], max(1, epochs // 2), args.stage, root, args.long)[1]

    what = "digits upscaled to 32x32, wider CNN" if args.long else "digits demo"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)"
    )
    print(f"{what}, {epochs} epochs, {args.repeats} alternating rounds, stage={args.stage!r}")
    print(
        f"{'variant':16s} {'min s':>7s} {'median s':>9s} {'ratio min':>10s} {'ratio median':>13s} {'RSS +MB':>8s}"
    )
    for name in variants:
        t, r = times[name], ratios[name]
        print(
            f"{name:16s} {min(t):7.2f} {statistics.median(t):9.2f} {min(r):10.3f} {statistics.median(r):13.3f}"
            f" {statistics.median(memory[name]):8.1f}"
        )
    if half is not None:
        print(
            f"periodic only, {max(1, epochs // 2)} epochs: RSS +{half:.1f} MB (vs {statistics.median(memory['periodic only']):.1f} MB)"
        )
    bare = statistics.median(times["bare Trainer"])
    print(
        f"\nper callback (in the whole suite, metered by RecipeReport, median of {len(costs)}; % of the bare run)"
    )
    header = (
        f"{'callback':26s} {'before s':>9s} {'during s':>9s} {'% bare':>7s} {'figures s':>10s} {'points':>7s}"
    )
    print(header + (f" {'alone +s':>9s}" if alone else ""))
    rows = sorted({n for c in costs for n in c.get("callbacks", {})})

    def med(name: str, key: str) -> float:
        return statistics.median(c["callbacks"][name][key] for c in costs if name in c.get("callbacks", {}))

    for name in sorted(rows, key=lambda n: -(med(n, "before_s") + med(n, "during_s"))):
        line = (
            f"{name:26s} {med(name, 'before_s'):9.3f} {med(name, 'during_s'):9.3f} "
            f"{100 * med(name, 'during_s') / bare:7.2f} {med(name, 'render_s'):10.3f} {med(name, 'points'):7.0f}"
        )
        print(line + (f" {alone.get(name, float('nan')):9.2f}" if alone else ""))
    total_before = statistics.median(c.get("before_s", 0.0) for c in costs)
    total_during = statistics.median(c.get("during_s", 0.0) for c in costs)
    print(f"{'total':26s} {total_before:9.3f} {total_during:9.3f} {100 * total_during / bare:7.2f}")
    # the one-time seconds as metered (the wall-time difference of two noisy runs is noisier), the
    # periodic share as measured against the bare run (at least 0: a faster run is noise)
    periodic = max(0.0, statistics.median(ratios["periodic only"]) - 1.0)
    if periodic < 0.03:
        print(
            f"whole suite within 1.03x from about {total_before / (0.03 - periodic) / 60:.1f} min bare "
            f"(one-time {total_before:.1f} s metered, periodic {100 * periodic:.1f}% of training)"
        )
    else:
        print(f"periodic callbacks {100 * periodic:.1f}% of training: the whole suite stays above 1.03x")


if __name__ == "__main__":
    main()
