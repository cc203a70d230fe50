"""``python -m lightning_recipe.tune TARGET [options]``: run (or join) a study from the command line.

``TARGET`` is ``module:function`` or ``path/to/file.py:function``, the ``build(params)`` function; the
search space is ``--space NAME=SPEC`` (repeated; SPEC as in :mod:`lightning_recipe.tune.space`), or
the ``SPACE`` dict beside the function. Every process started with the same ``--study-name`` and
``--storage`` works on the same study; each runs ``--n-trials`` trials. ``--summary-only`` prints the
summary of an existing study and runs nothing.

    python -m lightning_recipe.tune examples/tune.py:build --n-trials 12 --max-epochs 8 \\
        --storage journal:lightning_logs/tune/digits.journal --study-name digits
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from lightning_recipe.tune.study import PRUNERS, SAMPLERS, TuneResult, tune


def load_target(target: str) -> tuple[Any, Any]:
    """``(function, module)`` for ``module:function`` or ``file.py:function``."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise SystemExit(
            f"lightning_recipe.tune: TARGET {target!r}: pass module:function or path/to/file.py:function"
        )
    if where.endswith(".py") or os.sep in where:
        path = os.path.abspath(where)
        sys.path.insert(0, os.path.dirname(path))
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"lightning_recipe.tune: cannot import {where!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    if not hasattr(module, name):
        raise SystemExit(f"lightning_recipe.tune: {where!r} has no {name!r}")
    return getattr(module, name), module


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lightning_recipe.tune", description=__doc__.splitlines()[0])
    p.add_argument("target", help="the build(params) function: module:function or file.py:function")
    p.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="a parameter, e.g. lr=log:1e-4:1e-1, dropout=float:0:0.5, channels=int:8:32, opt=choice:adam,sgd",
    )
    p.add_argument("--n-trials", type=int, default=12, help="trials this process runs")
    p.add_argument("--study-name", default="recipe")
    p.add_argument(
        "--storage",
        default=None,
        help="an Optuna URL, journal:PATH, or a .db/.journal path (default: SQLite in --root-dir)",
    )
    p.add_argument("--root-dir", default="lightning_logs/tune")
    p.add_argument("--sampler", default="random", choices=SAMPLERS)
    p.add_argument("--sampler-seed", type=int, default=None)
    p.add_argument("--pruner", default="median", choices=PRUNERS)
    p.add_argument("--monitor", default="val_loss")
    p.add_argument("--mode", default="min", choices=("min", "max"))
    p.add_argument("--stage", default="regularize", help="recipe_callbacks stage of every trial, or 'none'")
    p.add_argument(
        "--exclude", action="append", default=[], metavar="CALLBACK", help="leave a recipe callback out"
    )
    p.add_argument("--seed", type=int, default=1337, help="FixedSeed of every trial")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--ensemble", type=int, default=0, help="average the best K trials at the end")
    p.add_argument("--summary-only", action="store_true", help="print the study's summary and run nothing")
    p.add_argument("--quiet", action="store_true")
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> TuneResult:
    args = parser().parse_args(argv)
    build, module = load_target(args.target)
    space: Any = {}
    for item in args.space:
        name, sep, spec = item.partition("=")
        if not sep:
            raise SystemExit(
                f"lightning_recipe.tune: --space {item!r}: pass NAME=SPEC, e.g. lr=log:1e-4:1e-1"
            )
        space[name] = spec
    if not space:
        space = getattr(module, "SPACE", None)
        if space is None:
            raise SystemExit("lightning_recipe.tune: no --space given and the target's module has no SPACE")
    trainer_kwargs = {"max_epochs": args.max_epochs} if args.max_epochs is not None else {}
    result = tune(
        build, space, 0 if args.summary_only else args.n_trials, study_name=args.study_name, storage=args.storage,
        root_dir=args.root_dir, sampler=args.sampler, sampler_seed=args.sampler_seed, pruner=args.pruner,
        monitor=args.monitor, mode=args.mode, stage=None if args.stage == "none" else args.stage,
        recipe_options={"exclude": args.exclude} if args.exclude else None, seed=args.seed,
        trainer_kwargs=trainer_kwargs, timeout=args.timeout, ensemble=args.ensemble, verbose=not args.quiet,
    )  # fmt: skip
    if args.summary_only:
        print(json.dumps(result.summary, indent=2, default=str))
    else:
        print(f"study summary: {result.summary_path}")
    return result


if __name__ == "__main__":
    main()
