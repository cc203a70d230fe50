"""Overhead of the recipe suite: the digits demo with and without ``recipe_callbacks``.

Runs ``examples/digits.py``'s model and data for ``--epochs`` epochs, alternating a bare
``Trainer`` and one with the callbacks of ``recipe_callbacks(--stage)`` at their default cadence
(both with the same TensorBoard logger), ``--repeats`` times each, and prints the median wall
time of each and their ratio. One-time checks (overfit one batch, baselines, data inspection)
are part of the suite's cost, so the ratio depends on the length of the run: it is reported for
the demo's own length.

    python benchmarks/overhead.py [--epochs 30] [--repeats 3] [--stage full]
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

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

from digits import DigitsConvNet, DigitsData

from lightning_recipe import recipe_callbacks
from lightning_recipe import writer as recipe_logging

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


def run(with_suite: bool, epochs: int, stage: str, root: str, exclude: tuple[str, ...] = ()) -> float:
    torch.manual_seed(0)
    # EarlyStopping may not end the suite's run sooner than the bare one: both train all epochs
    overrides = {"RecipeReport": {"print_summary": False}, "EarlyStopping": {"patience": 10**6}}
    callbacks = recipe_callbacks(stage, seed=0, overrides=overrides, exclude=exclude) if with_suite else []
    model = DigitsConvNet()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        callbacks=callbacks,
        logger=TensorBoardLogger(root, name="suite" if with_suite else "bare"),
        log_every_n_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, DigitsData())
        recipe_logging.drain()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stage", default="full")
    args = parser.parse_args()
    variants = {"bare Trainer": None, "whole suite": (), "per-step checks only": ONE_TIME}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as root:
        run(False, 1, args.stage, root)  # warm-up: imports, data loading
        for _ in range(args.repeats):
            for name, exclude in variants.items():
                times[name].append(run(exclude is not None, args.epochs, args.stage, root, exclude or ()))
    medians = {name: statistics.median(values) for name, values in times.items()}
    bare = medians["bare Trainer"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"digits demo, {args.epochs} epochs, {args.repeats} alternating runs each, stage={args.stage!r}")
    for name, values in times.items():
        print(
            f"{name:22s} median {medians[name]:7.2f} s  ratio {medians[name] / bare:6.3f}  {[round(t, 2) for t in values]}"
        )
    print(
        f"one-time checks ({', '.join(ONE_TIME)}): {medians['whole suite'] - medians['per-step checks only']:.2f} s"
    )


if __name__ == "__main__":
    main()
