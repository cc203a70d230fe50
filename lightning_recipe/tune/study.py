"""``tune``: random search on Optuna, each trial a real Lightning run with the recipe's callbacks."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from lightning_recipe.presets import STAGES, recipe_callbacks
from lightning_recipe.report import STATUSES, collect_findings
from lightning_recipe.tune.space import Space, suggest

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "RecipeTrialBug",
    "TrialMonitor",
    "TuneResult",
    "best_members",
    "make_pruner",
    "make_sampler",
    "resolve_storage",
    "tune",
    "val_dataloader",
]

log = logging.getLogger("lightning_recipe.tune")

SamplerName = Literal["random", "tpe", "qmc", "cmaes", "gp"]
PrunerName = Literal["median", "hyperband", "successive_halving", "none"]
SAMPLERS: tuple[str, ...] = ("random", "tpe", "qmc", "cmaes", "gp")
PRUNERS: tuple[str, ...] = ("median", "hyperband", "successive_halving", "none")
#: What ``build(params)`` returns: ``(module, data)`` or ``(module, data, trainer_kwargs)``; ``data`` is a
#: ``LightningDataModule``, a ``(train_dataloader, val_dataloader)`` pair, or ``None`` (the module's own).
Build = Callable[[dict[str, Any]], Sequence[Any]]


class RecipeTrialBug(RuntimeError):
    """A trial whose recipe checks failed: a bug in the run (marked ``FAIL`` in the study), not a bad
    hyperparameter value."""


# ---------------------------------------------------------------------- the engine's parts
def resolve_storage(storage: str | BaseStorage | None, root_dir: str, study_name: str) -> str | BaseStorage:
    """Optuna storage: ``None`` -> an SQLite file ``<root_dir>/<study_name>.db``; any Optuna URL
    (``sqlite:///``, ``postgresql://``, ``mysql://``) as is; ``journal:PATH`` or a path ending in
    ``.journal``/``.log`` -> Optuna's journal file storage (several processes on one machine or a
    shared file system); a path ending in ``.db`` -> SQLite; a ``BaseStorage`` as is."""
    if storage is None:
        os.makedirs(root_dir, exist_ok=True)
        return f"sqlite:///{os.path.abspath(os.path.join(root_dir, study_name + '.db'))}"
    if isinstance(storage, BaseStorage):
        return storage
    if not isinstance(storage, str) or not storage:
        raise TypeError(f"tune(storage={storage!r}): pass an Optuna storage URL, a file path, or None.")
    path = storage[len("journal:") :] if storage.startswith("journal:") else None
    if path is None and storage.endswith((".journal", ".log")) and "://" not in storage:
        path = storage
    if path is not None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = path[2:] if path.startswith("//") else path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if "://" not in storage:
        if not storage.endswith(".db"):
            raise ValueError(
                f"tune(storage={storage!r}): not an Optuna URL; pass e.g. 'sqlite:///study.db', "
                "'postgresql://user@host/db', 'journal:study.journal', or a path ending in .db or .journal."
            )
        os.makedirs(os.path.dirname(os.path.abspath(storage)), exist_ok=True)
        return f"sqlite:///{os.path.abspath(storage)}"
    return storage


def make_sampler(sampler: SamplerName | BaseSampler, seed: int | None = None) -> BaseSampler:
    """Optuna's sampler by name; ``"random"`` is the recipe's advice ("random over grid search")."""
    if isinstance(sampler, BaseSampler):
        return sampler
    samplers: dict[str, Callable[[], BaseSampler]] = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
    }
    if sampler not in samplers:
        raise ValueError(
            f"tune(sampler={sampler!r}): unknown sampler; pass one of {list(SAMPLERS)} or an Optuna sampler."
        )
    return samplers[sampler]()


def make_pruner(pruner: PrunerName | BasePruner) -> BasePruner:
    """Optuna's pruner by name. ``"median"``: prune a trial whose monitored value is worse than the
    median of earlier trials at the same validation, after 3 finished trials and the first validation."""
    if isinstance(pruner, BasePruner):
        return pruner
    pruners: dict[str, Callable[[], BasePruner]] = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }
    if pruner not in pruners:
        raise ValueError(
            f"tune(pruner={pruner!r}): unknown pruner; pass one of {list(PRUNERS)} or an Optuna pruner."
        )
    return pruners[pruner]()


class TrialMonitor(Callback):
    """Report the monitored metric to the Optuna trial at every validation, let Optuna's pruner stop the
    run, and at the end of fit write the trial's HParams (its parameters; the best monitored value and
    the recipe's verdict counts as metrics) to every logger.

    Attributes:
        values: the monitored value at each validation; ``pruned_at``: the validation it was pruned at.
        counts: recipe findings per status; ``failures``: ``"check: message"`` of each ``fail``.
    """

    def __init__(self, trial: optuna.Trial, monitor: str, mode: str, params: Mapping[str, Any]) -> None:
        self.trial, self.monitor, self.mode, self.params = trial, monitor, mode, dict(params)
        self.values: list[float] = []
        self.pruned_at: int | None = None
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    @property
    def best(self) -> float | None:
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if self.mode == "min" else max(finite)

    @property
    def state(self) -> str:
        return "pruned" if self.pruned_at is not None else "bug" if self.counts.get("fail") else "complete"

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or self.pruned_at is not None:
            return
        self.values.append(float(value))
        step = len(self.values) - 1
        if math.isfinite(self.values[-1]):
            self.trial.report(self.values[-1], step)
        if self.trial.should_prune():
            self.pruned_at = step
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        findings = collect_findings(trainer)
        self.counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
        self.failures = [f"{f.check}: {f.message}" for f in findings if f.status == "fail"]
        metrics = {f"recipe/tune/{s}": float(n) for s, n in self.counts.items() if s != "skipped"}
        if self.best is not None:
            metrics[f"recipe/tune/best_{self.monitor}"] = self.best
        hparams = {**self.params, "trial": self.trial.number, "state": self.state}
        for logger in trainer.loggers:
            logger.log_hyperparams(hparams, metrics)


@dataclass
class TuneResult:
    """What :func:`tune` returns: the Optuna ``study`` (shared through its storage) and its ``summary``
    (also written to ``summary_path`` and TensorBoard's Text tab)."""

    study: optuna.Study
    summary: dict[str, Any] = field(default_factory=dict)
    summary_path: str | None = None

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.study.best_params)

    @property
    def best_value(self) -> float:
        return float(self.study.best_value)


# ---------------------------------------------------------------------- one trial
def _unpack(built: Any) -> tuple[LightningModule, Any, dict[str, Any]]:
    if isinstance(built, LightningModule):
        return built, None, {}
    if isinstance(built, Sequence) and len(built) in (2, 3) and isinstance(built[0], LightningModule):
        extra = dict(built[2]) if len(built) == 3 and built[2] is not None else {}
        return built[0], built[1], extra
    raise TypeError(
        f"tune(build=...): build(params) returned {type(built).__name__}; return (module, data) or "
        "(module, data, trainer_kwargs), data a LightningDataModule, (train_loader, val_loader) or None."
    )


def _fit(trainer: Trainer, module: LightningModule, data: Any) -> None:
    if isinstance(data, LightningDataModule):
        trainer.fit(module, datamodule=data)
    elif isinstance(data, Mapping):
        trainer.fit(module, **data)
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        trainer.fit(module, *data)
    else:
        trainer.fit(module)


def val_dataloader(data: Any) -> Any:
    """The validation dataloader of what ``build`` returned as data."""
    if isinstance(data, LightningDataModule):
        data.setup("validate")
        return data.val_dataloader()
    if isinstance(data, Mapping):
        return data.get("val_dataloaders")
    if isinstance(data, Sequence) and len(data) > 1:
        return data[1]
    return None


@dataclass
class _Config:
    build: Build
    space: Space
    study_name: str
    root_dir: str
    monitor: str
    mode: str
    stage: str | None
    recipe_options: dict[str, Any]
    seed: int
    trainer_kwargs: dict[str, Any]
    save_weights: bool
    n_trials: int


def _run_trial(trial: optuna.Trial, cfg: _Config) -> float:
    start = time.perf_counter()
    params = suggest(trial, cfg.space)
    callbacks: list[Callback] = []
    if cfg.stage is not None:  # FixedSeed seeds here: the same seed for every trial, before the model
        options = dict(cfg.recipe_options)
        overrides = {
            "RecipeReport": {"print_summary": False, "log_hparams": False},
            **options.pop("overrides", {}),
        }
        callbacks = recipe_callbacks(
            cfg.stage, seed=cfg.seed, monitor=cfg.monitor, mode=cfg.mode, overrides=overrides, **options
        )  # type: ignore[arg-type]
    module, data, extra = _unpack(cfg.build(dict(params)))
    monitor = TrialMonitor(trial, cfg.monitor, cfg.mode, params)
    logger = TensorBoardLogger(
        cfg.root_dir, name=cfg.study_name, version=f"trial_{trial.number:04d}", default_hp_metric=False
    )
    kwargs: dict[str, Any] = {
        "max_epochs": 10,
        "devices": 1,
        "logger": logger,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        **cfg.trainer_kwargs,
        **extra,
    }
    user = list(cfg.trainer_kwargs.get("callbacks", [])) + list(extra.get("callbacks", []))
    kwargs["callbacks"] = [*callbacks, *user, monitor]
    trainer = Trainer(**kwargs)
    _fit(trainer, module, data)
    run_dir = logger.log_dir if trainer.logger is logger else trainer.default_root_dir
    trial.set_user_attr("run_dir", run_dir)
    trial.set_user_attr("values", monitor.values)
    trial.set_user_attr("recipe_counts", monitor.counts)
    trial.set_user_attr("state", monitor.state)
    if monitor.best is None:
        raise ValueError(
            f"tune(monitor={cfg.monitor!r}): trial {trial.number} never logged it; the logged metrics are "
            f"{sorted(trainer.callback_metrics)}; pass monitor= one of them."
        )
    if monitor.state == "complete" and cfg.save_weights:
        path = os.path.join(run_dir, "weights.pt")
        os.makedirs(run_dir, exist_ok=True)
        torch.save(module.state_dict(), path)
        trial.set_user_attr("weights", path)
    _progress(trial, cfg, monitor, params, time.perf_counter() - start)
    if monitor.state == "pruned":
        raise optuna.TrialPruned(f"pruned at validation {monitor.pruned_at}")
    if monitor.state == "bug":
        trial.set_user_attr("recipe_bug", True)
        trial.set_user_attr("recipe_failures", monitor.failures)
        raise RecipeTrialBug(f"trial {trial.number}: a recipe check failed: " + " | ".join(monitor.failures))
    return float(monitor.best)  # type: ignore[arg-type]


def _progress(
    trial: optuna.Trial, cfg: _Config, monitor: TrialMonitor, params: dict[str, Any], seconds: float
) -> None:
    shown = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    best = monitor.best
    what = f"{cfg.monitor}={best:.4g}" if best is not None else f"{cfg.monitor} never logged"
    if monitor.state == "pruned":
        what += f" (pruned at validation {monitor.pruned_at})"
    elif monitor.state == "bug":
        what += f" (a recipe check failed: {monitor.failures[0][:100]})"
    log.info(f"trial {trial.number} [{monitor.state}] {what}  {shown}  ({seconds:.1f} s)")


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Per-trial lines instead of Lightning's and Optuna's own chatter; restored afterwards."""
    lightning_log = logging.getLogger("lightning.pytorch")
    before = (lightning_log.level, optuna.logging.get_verbosity(), log.level)
    handler = None
    if verbose:
        log.setLevel(logging.INFO)
        if not log.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("[tune] %(message)s"))
            log.addHandler(handler)
    lightning_log.setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        lightning_log.setLevel(before[0])
        optuna.logging.set_verbosity(before[1])
        log.setLevel(before[2])
        if handler is not None:
            log.removeHandler(handler)


# ---------------------------------------------------------------------- the study
def tune(
    build: Build,
    space: Space,
    n_trials: int = 12,
    *,
    study_name: str = "recipe",
    storage: str | BaseStorage | None = None,
    root_dir: str = "lightning_logs/tune",
    sampler: SamplerName | BaseSampler = "random",
    sampler_seed: int | None = None,
    pruner: PrunerName | BasePruner = "median",
    monitor: str = "val_loss",
    mode: Literal["min", "max"] = "min",
    stage: str | None = "regularize",
    recipe_options: Mapping[str, Any] | None = None,
    seed: int = 1337,
    trainer_kwargs: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    ensemble: int = 0,
    save_weights: bool = True,
    verbose: bool = True,
) -> TuneResult:
    """Search hyperparameters with Optuna; every trial is a Lightning run with the recipe's callbacks.

    Recipe, "Tune": *"random over grid search [...] neural nets are often much more sensitive to some
    parameters than others"*. Each trial draws its parameters from ``space`` (random sampling by
    default), calls ``build(params)`` for the module and data, and trains them with
    ``recipe_callbacks(stage)`` (the same ``seed`` every trial, so trials differ by their parameters
    only) in its own TensorBoard run ``<root_dir>/<study_name>/trial_NNNN`` with HParams (the
    parameters; ``recipe/tune/best_<monitor>`` and ``recipe/tune/pass|warn|fail`` as metrics), so the
    HParams tab compares trials. Optuna's pruner stops unpromising trials on ``monitor``. A trial
    whose recipe checks ``fail`` is marked ``FAIL`` in the study (a bug, not a bad hyperparameter:
    samplers ignore it) and the search goes on. At the end the study's summary (best trial, parameter
    importances and what they mean, bugs) goes to the Text tab of ``<study_name>/summary`` and to
    ``<root_dir>/<study_name>/study_summary.json``.

    The study lives in Optuna's storage, so several processes or machines can run ``tune`` on the same
    ``study_name`` and ``storage`` at once (each runs ``n_trials``); give each its own ``sampler_seed``.

    Args:
        build: ``build(params) -> (module, data)`` or ``(module, data, trainer_kwargs)``; ``data`` a
            ``LightningDataModule``, a ``(train_loader, val_loader)`` pair, or ``None``.
        space: ``{name: distribution}`` (Optuna distributions, lists of choices, or strings such as
            ``"log:1e-4:1e-1"``; see :mod:`lightning_recipe.tune.space`) or ``space(trial) -> dict``.
        n_trials: trials this call runs.
        study_name: the study (created, or loaded when it exists in ``storage``).
        storage: see :func:`resolve_storage`; default an SQLite file in ``root_dir``.
        root_dir: where the TensorBoard runs, weights and the summary go.
        sampler: ``"random"`` (default), ``"tpe"``, ``"qmc"``, ``"cmaes"``, ``"gp"`` or an Optuna sampler.
        sampler_seed: the sampler's seed (``None``: random).
        pruner: ``"median"`` (default), ``"hyperband"``, ``"successive_halving"``, ``"none"`` or an Optuna pruner.
        monitor: the validation metric to optimise (as logged); ``mode``: ``"min"`` or ``"max"``.
        stage: the :func:`~lightning_recipe.recipe_callbacks` stage of every trial (``None``: none).
        recipe_options: more arguments for ``recipe_callbacks`` (``exclude=``, ``overrides=``, ``task=``).
        seed: the :class:`~lightning_recipe.FixedSeed` seed of every trial.
        trainer_kwargs: ``Trainer`` arguments of every trial (default ``max_epochs=10``, ``devices=1``,
            no progress bar, no checkpointing); ``build``'s own override them.
        timeout: stop starting trials after this many seconds.
        ensemble: after the search, average the best ``ensemble`` completed trials (``>= 2``) on the
            best trial's validation data and add the gain to the summary (:func:`evaluate_ensemble`).
        save_weights: save each completed trial's final weights (``weights.pt`` in its run folder).
        verbose: one line per trial (logger ``lightning_recipe.tune``).

    Raises:
        ValueError: an unknown sampler, pruner, stage or mode; a study of the other direction;
            ``monitor`` never logged.
    """
    from lightning_recipe.tune.summary import summarize, write_summary

    if mode not in ("min", "max"):
        raise ValueError(f"tune(mode={mode!r}): pass 'min' or 'max'.")
    if stage is not None and stage not in STAGES:
        raise ValueError(f"tune(stage={stage!r}): unknown stage; pass one of {sorted(STAGES)} or None.")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"tune(n_trials={n_trials!r}): pass an integer >= 0.")
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble == 1 or ensemble < 0:
        raise ValueError(
            f"tune(ensemble={ensemble!r}): pass 0 (no ensemble) or the number of trials to average (>= 2)."
        )
    if not callable(space):
        from lightning_recipe.tune.space import parse_space

        parse_space(space)  # fail before the first trial
    direction = "minimize" if mode == "min" else "maximize"
    study = optuna.create_study(
        study_name=study_name,
        storage=resolve_storage(storage, root_dir, study_name),
        sampler=make_sampler(sampler, sampler_seed),
        pruner=make_pruner(pruner),
        direction=direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise ValueError(
            f"tune(mode={mode!r}): the study {study_name!r} in this storage was created to "
            f"{study.direction.name.lower()}; pass the same mode or another study_name."
        )
    cfg = _Config(
        build, space, study_name, root_dir, monitor, mode, stage, dict(recipe_options or {}), seed,
        dict(trainer_kwargs or {}), save_weights, n_trials,
    )  # fmt: skip
    with _quiet(verbose):
        if n_trials:
            log.info(
                f"study {study_name!r}: {n_trials} trials, {type(study.sampler).__name__}, {type(study.pruner).__name__}"
            )
        study.optimize(
            lambda trial: _run_trial(trial, cfg), n_trials=n_trials, timeout=timeout, catch=(RecipeTrialBug,)
        )
        ensemble_result = None
        if ensemble >= 2:
            members, names, data = best_members(study, build, ensemble)
            if len(members) >= 2 and data is not None:
                from lightning_recipe.ensemble import evaluate_ensemble

                ensemble_result = evaluate_ensemble(members, data, names=names)
        summary = summarize(study, monitor, mode, ensemble_result)
        path = write_summary(summary, os.path.join(root_dir, study_name), ensemble_result)
        for line in summary["advice"]:
            log.info(line)
    return TuneResult(study, summary, path)


def best_members(
    study: optuna.Study, build: Build, k: int = 3
) -> tuple[list[LightningModule], list[str], Any]:
    """The best ``k`` completed trials as modules (rebuilt with ``build`` and loaded with their saved
    weights), their names, and the best trial's validation dataloader: ready for :func:`evaluate_ensemble`."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("weights")
    ]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value, reverse=reverse)  # type: ignore[arg-type, return-value]
    members, names, data = [], [], None
    for t in done[:k]:
        module, built_data, _ = _unpack(build(dict(t.params)))
        module.load_state_dict(torch.load(t.user_attrs["weights"], map_location="cpu"))
        members.append(module)
        names.append(f"trial {t.number}")
        if data is None:
            data = val_dataloader(built_data)
    return members, names, data
