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

from lightning_recipe import logging as recipe_logging
from lightning_recipe import recipe_callbacks


def run(with_suite: bool, epochs: int, stage: str, root: str) -> float:
    torch.manual_seed(0)
    # EarlyStopping may not end the suite's run sooner than the bare one: both train all epochs
    overrides = {"RecipeReport": {"print_summary": False}, "EarlyStopping": {"patience": 10**6}}
    callbacks = recipe_callbacks(stage, seed=0, overrides=overrides) if with_suite else []
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
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as root:
        run(False, 1, args.stage, root)  # warm-up: imports, data loading
        for _ in range(args.repeats):
            for flag in (False, True):
                times[flag].append(run(flag, args.epochs, args.stage, root))
    bare, suite = statistics.median(times[False]), statistics.median(times[True])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"digits demo, {args.epochs} epochs, {args.repeats} alternating runs each, stage={args.stage!r}")
    print(f"bare Trainer:        median {bare:7.2f} s  {[round(t, 2) for t in times[False]]}")
    print(f"with recipe suite:   median {suite:7.2f} s  {[round(t, 2) for t in times[True]]}")
    print(f"ratio: {suite / bare:.3f}")


if __name__ == "__main__":
    main()
