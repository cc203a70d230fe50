"""The recipe's "Tune": random search on Optuna, each trial a real Lightning run with the recipe's callbacks.

Needs ``optuna`` (``pip install "lightning-recipe[tune]"``; the dev setup installs it).

    from lightning_recipe.tune import tune

    def build(params):                        # a trial's parameters -> module and data
        return MyModule(lr=params["lr"], dropout=params["dropout"]), MyDataModule()

    result = tune(build, {"lr": "log:1e-4:1e-1", "dropout": "float:0:0.5"}, n_trials=12)
    result.best_params, result.summary["advice"]

or from the command line (several processes may share one study through its storage):

    python -m lightning_recipe.tune examples/tune.py:build --n-trials 12 --storage journal:study.journal

See :func:`tune` for what each trial logs and :mod:`lightning_recipe.tune.summary` for the summary.
"""

from lightning_recipe.tune.space import Space, parse_space, parse_spec, suggest
from lightning_recipe.tune.study import (
    PRUNERS,
    SAMPLERS,
    RecipeTrialBug,
    TrialMonitor,
    TuneResult,
    best_members,
    make_pruner,
    make_sampler,
    resolve_storage,
    tune,
    val_dataloader,
)
from lightning_recipe.tune.summary import importance_advice, summarize, summary_markdown, write_summary

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "RecipeTrialBug",
    "Space",
    "TrialMonitor",
    "TuneResult",
    "best_members",
    "importance_advice",
    "make_pruner",
    "make_sampler",
    "parse_space",
    "parse_spec",
    "resolve_storage",
    "suggest",
    "summarize",
    "summary_markdown",
    "tune",
    "val_dataloader",
    "write_summary",
]
