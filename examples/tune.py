"""Tune the digits ConvNet: random search on Optuna, every trial a run with the recipe's checks.

The recipe's step 5, "random over grid search": a dozen trials draw the learning rate, the dropout
and the width at random; each trial trains `examples/digits.py`'s ConvNet with
`recipe_callbacks("regularize")` (the checks that find bugs; the picture-drawing ones are left out
to keep the trials short) in its own TensorBoard run with HParams; Optuna's median pruner stops
unpromising trials; at the end the study's summary (best trial, which parameters matter) and the
ensemble of the three best trials ("squeeze out the juice") go to TensorBoard's Text tab.

    python examples/tune.py --logdir lightning_logs            # about 12 trials, 1-3 minutes on a laptop CPU
    tensorboard --logdir lightning_logs/tune                   # HParams tab: compare the trials

The same study from the command line (start it in several terminals: they share the study):

    python -m lightning_recipe.tune examples/tune.py:build --n-trials 6 \\
        --storage journal:lightning_logs/tune/digits.journal --study-name digits --root-dir lightning_logs/tune
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from digits import DigitsConvNet, DigitsData

from lightning_recipe.dashboard import tensorboard_command
from lightning_recipe.tune import TuneResult, tune

#: The search space: log scale for the learning rate (the recipe tunes it "all the way at the very end").
SPACE = {"lr": "log:1e-4:3e-2", "dropout": "float:0:0.5", "channels": "int:4:16"}
#: The recipe callbacks that only draw pictures: left out of the trials, which are about numbers.
PICTURES = ["BatchInspector", "PredictionDynamics", "FirstLayerFilters"]
_FAST = {"value": False}


def build(params: dict[str, Any]):
    """A trial's module, data and Trainer arguments from its parameters."""
    model = DigitsConvNet(lr=params["lr"], channels=params["channels"], dropout=params["dropout"])
    data = DigitsData(limit=256 if _FAST["value"] else None)
    trainer = {"accelerator": "cpu", "max_epochs": 6, "log_every_n_steps": 5}
    if _FAST["value"]:
        trainer.update(max_epochs=1, limit_train_batches=2)
    return model, data, trainer


def main(argv: Sequence[str] | None = None) -> TuneResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="lightning_logs")
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument(
        "--storage", default=None, help="an Optuna storage (default: SQLite in <logdir>/tune)"
    )
    parser.add_argument("--study-name", default="digits")
    parser.add_argument("--fast", action="store_true", help="two tiny trials (smoke test)")
    args = parser.parse_args(argv)
    _FAST["value"] = args.fast
    root = os.path.join(args.logdir, "tune")
    result = tune(
        build,
        SPACE,
        n_trials=2 if args.fast else args.n_trials,
        study_name=args.study_name,
        storage=args.storage,
        root_dir=root,
        stage="regularize",
        recipe_options={"exclude": PICTURES},
        ensemble=0 if args.fast else 3,
    )
    print(
        f"\nbest trial {result.study.best_trial.number}: val_loss={result.best_value:.4g} with {result.best_params}"
    )
    for line in result.summary["advice"][1:]:
        print(f"  - {line}")
    print(f"summary: {result.summary_path}")
    print(f"View the trials (no venv to activate):\n    {tensorboard_command(root)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
