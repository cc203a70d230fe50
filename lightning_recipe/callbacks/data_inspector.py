"""DataInspector and inspect_data: the recipe's "become one with the data"."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.budget import check_one_time, shared_budget
from lightning_recipe.core.checks.data_inspector import (
    DataInspection,
    DataInspectorConfig,
    budget_samples,
    imbalance_answer,
    inspect_data,
    note_scanned,
    report_findings,
    scan_sources,
    summary_scalars,
)
from lightning_recipe.core.data_scan import (
    ITERABLE_MAX_SAMPLES,
    ScanPlan,
    duplicate_tiles,
    flagged_tiles,
    sample_fetcher,
)
from lightning_recipe.core.data_stats import AXES, DataReport, DataTask
from lightning_recipe.core.state import preserved_state
from lightning_recipe.findings import Finding, RecipeCheckError
from lightning_recipe.plots.data_inspector import report_figures

__all__ = ["ITERABLE_MAX_SAMPLES", "DataInspection", "DataInspector", "inspect_data"]

_PREFIX = "recipe/data/"


class DataInspector(RecipeCallback):
    """Inspect the training and validation data at the start of fit, before any neural net code.

    Recipe, "become one with the data": *"One time I discovered that the data contained duplicate
    examples. Another time I found corrupted images / labels. I look for data imbalances and
    biases."* One streaming pass over the training and validation datasets (its own sequential
    loader: sample numbers are dataset indices) finds duplicates, train/val overlap, NaN/Inf,
    blank samples, labels out of range, missing classes, class imbalance, constant features and
    outliers: one finding per problem (``fail`` for NaN/Inf and bad labels), or one ``pass``.
    TensorBoard, at step 0, under ``recipe/data/``: ``summary`` (Text), ``class_counts``,
    ``sample_stats``, ``extremes``, ``duplicates``, ``flagged`` (figures), ``<split>/sample_mean|std|norm``
    (Histograms), ``<split>/samples|duplicates|nonfinite|blank|imbalance_ratio`` and ``train_val_overlap``.
    See the README section "Become one with the data" for every finding, DDP and iterable datasets.

    Args:
        input_key, target_key: where the inputs and targets are in a batch; inferred by default.
        task: ``"auto"``, ``"multiclass"``, ``"binary"``, ``"multilabel"`` or ``"regression"``.
        num_classes: labels at or above it are out of range, classes below it without samples missing.
        ignore_index: a sentinel label neither counted nor out of range (``None``: count every label).
        max_samples: inspect a fixed random subset of this many samples per split (an iterable data
            set without ``len()``: its first ``max_samples``, default 10,000).
        batch_size: batch size of the inspection loader (default: the training loader's).
        check_val: inspect the validation data too (and compare it with the training data).
        near_duplicates: also look for near-duplicate images (same 8x8 average hash).
        imbalance_ratio, near_constant_ratio, outlier_z: the thresholds of those findings.
        top_k: how many extreme samples to show per statistic and direction.
        progress: show a progress bar (default: when the trainer shows one).
        log_images: log the figures (the summary, scalars and histograms always).
        one_time: the share of the planned run the one-time checks may take together (README "Cost"):
            without ``max_samples``, a split is read up to a fixed random subset of what that share
            of the planned run trains on (at least 4096 samples); the summary says how many batches
            were read. ``None`` (default alone): every sample.
        on_fail: ``"warn"`` or ``"raise"`` (``RecipeCheckError`` for a ``fail``, after logging).

    Attributes:
        findings: the findings of the current run.
        result: the :class:`DataInspection` of the current run (``None`` before fit and on resume).

    Raises:
        ValueError, TypeError: for an unknown ``task``, a bad key, count or threshold.

    Example:
        >>> import warnings
        >>> from lightning_recipe.demos import TinyClassifier, classification_data, tiny_trainer
        >>> data = classification_data()
        >>> data.dataset.tensors[0][10] = float("nan")      # one corrupted sample
        >>> inspector = DataInspector(progress=False)
        >>> trainer = tiny_trainer(max_steps=1, callbacks=[inspector], default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(TinyClassifier(), data)
        >>> [(f.status, f.numbers["issue"], f.numbers["examples"]) for f in inspector.findings if f.is_problem]
        [('fail', 'nonfinite_inputs', [10])]
    """

    def __init__(
        self,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        task: DataTask = "auto",
        num_classes: int | None = None,
        ignore_index: int | None = -100,
        max_samples: int | None = None,
        batch_size: int | None = None,
        check_val: bool = True,
        near_duplicates: bool = False,
        imbalance_ratio: float = 5.0,
        near_constant_ratio: float = 0.01,
        outlier_z: float = 12.0,
        top_k: int = 8,
        progress: bool | None = None,
        log_images: bool = True,
        one_time: float | None = None,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        self.one_time_share = check_one_time(self.name, one_time)
        self.input_key = input_key
        self.target_key = target_key
        self.task = task
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.check_val = bool(check_val)
        self.near_duplicates = bool(near_duplicates)
        self.imbalance_ratio = imbalance_ratio
        self.near_constant_ratio = near_constant_ratio
        self.outlier_z = outlier_z
        self.top_k = top_k
        self.progress = progress
        self.log_images = bool(log_images)
        self.config.validate(self.name)
        self.result: DataInspection | None = None
        self._done = False

    @property
    def config(self) -> DataInspectorConfig:
        """The arguments that decide what is read and how it is judged."""
        return DataInspectorConfig(
            self.input_key, self.target_key, self.task, self.num_classes, self.ignore_index,
            self.max_samples, self.batch_size, self.near_duplicates, self.imbalance_ratio,
            self.near_constant_ratio, self.outlier_z, self.top_k,
        )  # fmt: skip

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._done = False
            self.result = None

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._done or not self.is_fitting(trainer):
            return
        self._inspect(trainer)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self.one_time_state(self._done)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = self.load_one_time_state(state_dict)

    def _sources(self, trainer: Trainer) -> dict[str, Any]:
        sources: dict[str, Any] = {"train": self.first_dataloader(self.train_dataloader(trainer))}
        if self.check_val:
            val = self.val_dataloader(trainer) if trainer.limit_val_batches != 0 else None
            if val is not None:
                sources["val"] = val
        return sources

    def _inspect(self, trainer: Trainer) -> None:
        # the loaders are built outside the state guard: building them is the user's code and
        # Lightning would build them (consuming what they consume) right after this hook anyway
        sources = self._sources(trainer)
        progress = self.progress if self.progress is not None else trainer.progress_bar_callback is not None
        rank, world = int(trainer.global_rank), int(trainer.world_size)
        config, budget, cap, start = self.config, None, None, time.perf_counter()
        if self.one_time_share is not None and self.max_samples is None:
            budget = shared_budget(trainer, self.one_time_share)
            cap = budget_samples(
                budget.fraction(self.name),
                budget.planned_steps,
                self.batch_size or getattr(sources["train"], "batch_size", None),
            )
            config = replace(config, max_samples=cap)
        # iterable sources are iterated as they are: their own generators are restored too
        with preserved_state(None, loaders=list(sources.values())):
            outcome = scan_sources(
                sources, config, bool(progress), rank, world, agree=lambda ok: self.decide(trainer, ok),
                balanced_by=imbalance_answer(sources["train"], trainer.lightning_module),
                check_order=not trainer.overfit_batches,
            )  # fmt: skip
        self._done = True
        if budget is not None and cap is not None and outcome.report is not None:
            budget.charge(self.name, time.perf_counter() - start)
            note_scanned(
                outcome.report,
                outcome.plans,
                cap,
                budget.note(self.name, cap, False, "samples per split at most"),
            )
        for reason in outcome.failed.values():
            self.record(trainer, "skipped", reason, {"issue": "not_scanned"})
        if outcome.report is None:
            return
        if trainer.is_global_zero:
            with preserved_state(None):  # fetching samples to show may run random transforms
                self._log(trainer, outcome.report, outcome.plans, int(trainer.global_step))
        first_fail: Finding | None = None
        for status, message, numbers in report_findings(outcome.report):
            finding = self.record(trainer, status, message, numbers, raise_on_fail=False)  # type: ignore[arg-type]
            if status == "fail" and first_fail is None:
                first_fail = finding
        self.result = DataInspection(outcome.report, list(self.findings))
        if first_fail is not None and self.on_fail == "raise":
            raise RecipeCheckError(first_fail)

    def _log(self, trainer: Trainer, report: DataReport, plans: dict[str, ScanPlan], step: int) -> None:
        scalars = {_PREFIX + name: value for name, value in summary_scalars(report).items()}
        recipe_logging.log_scalars(trainer, scalars, step)
        for split, stats in report.stats.items():
            for j, axis in enumerate(AXES):
                recipe_logging.log_histogram(trainer, f"{_PREFIX}{split}/sample_{axis}", stats[:, j], step)
        recipe_logging.log_text(trainer, f"{_PREFIX}summary", report.markdown(), step)
        if not self.log_images:
            return
        fetch = sample_fetcher(plans, self.input_key, self.target_key)
        figures = report_figures(report, duplicate_tiles(report, fetch), flagged_tiles(report, fetch))
        for name, build in figures.items():
            recipe_logging.log_figure(trainer, _PREFIX + name, build, step)
