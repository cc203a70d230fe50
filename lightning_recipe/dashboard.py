"""What TensorBoard opens on: a custom-scalars page built from the run's tags, and HParams.

:class:`~lightning_recipe.report.RecipeReport` calls this module; nothing here needs calling by hand.

- **Custom Scalars** (``custom_scalars`` plugin): one page that tells the story of the run, written at
  the end of fit from the scalar tags the run actually logged (a chart whose tags were never
  logged is left out): the validation loss against the dumb baselines, the training loss with its
  smoothed curve, the generalization gap, per-layer update/weight ratios (with a min/median/max
  margin chart), gradient norms and dead units, the learning rate (the real one from
  ``LearningRateMonitor`` and the one ``LRScheduleAudit`` simulated), prediction jitter.
- **HParams**: the module's and datamodule's ``hparams`` plus the recipe's settings (seed, monitor,
  optimizer, initial learning rate, epochs), with metrics that make runs comparable: the report's
  counts (``recipe/report/fail``, ``warn``, ``pass``), the best value of the monitored metric
  (``recipe/report/best_<monitor>``) and the recipe's one-off numbers (``recipe/loss_at_init/measured``
  and ``expected``, the data-scan counts, ...). The session is written when fit starts, before
  Lightning's own (TensorBoard keeps the first one), the metric values at the end of fit.

One-off numbers (loss at init, data-scan counts) stay scalars under their tags, since an HParams
metric *is* a scalar of the run: the HParams tab shows them in one row per run; in Time Series
they are single-point cards (filter them away with the regex given in the README).

Example:
    >>> layout = build_layout({"val_loss": 9, "recipe/dumb_baselines/prior_loss": 9, "train_loss": 40,
    ...                        "recipe/training_loss/smoothed": 20}, monitor="val_loss", train_loss="train_loss")
    >>> list(layout), list(layout["recipe: loss"])
    (['recipe: loss'], ['validation loss vs dumb baselines', 'training loss, raw and smoothed'])
    >>> layout["recipe: loss"]["training loss, raw and smoothed"]
    ['Multiline', ['^train_loss$', '^recipe/training_loss/smoothed$']]
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

__all__ = [
    "ONE_OFF_METRICS",
    "build_layout",
    "hparams_of",
    "metric_tags",
    "note_scalars",
    "scalar_tags",
    "tensorboard_command",
]

#: The one-off numbers each recipe callback logs (one point per run) that HParams shows as metrics.
ONE_OFF_METRICS: dict[str, tuple[str, ...]] = {
    "DataInspector": (
        "recipe/data/train/samples",
        "recipe/data/train/duplicates",
        "recipe/data/train_val_overlap",
    ),
    "FinalBiasInit": ("recipe/bias_init/expected_loss",),
    "LossAtInitCheck": ("recipe/loss_at_init/measured", "recipe/loss_at_init/expected"),
    "BatchIndependenceCheck": ("recipe/batch_independence/mixing_ratio",),
    "InputIndependentBaseline": (
        "recipe/input_independent/real_val_loss",
        "recipe/input_independent/zeroed_val_loss",
    ),
    "TrainingLossCheck": ("recipe/training_loss/trend_z",),
    "EarlyStopping": ("recipe/early_stopping/best_epoch",),
}

#: Up to 2 distinct steps per scalar tag written through :mod:`lightning_recipe.writer`, per writer.
_SEEN: weakref.WeakKeyDictionary[Any, dict[str, set[int]]] = weakref.WeakKeyDictionary()


def note_scalars(writer: Any, tags: Iterable[str], step: int) -> None:
    """Remember that ``writer`` got these scalar tags at ``step`` (called by the writer module)."""
    try:
        seen = _SEEN.setdefault(writer, {})
    except TypeError:  # not weak-referenceable: nothing to remember
        return
    for tag in tags:
        steps = seen.setdefault(tag, set())
        if len(steps) < 2:
            steps.add(int(step))


def scalar_tags(trainer: Trainer) -> dict[str, int]:
    """The scalar tags of the run so far, each with its number of distinct steps (capped at 2).

    The recipe's own tags come from the writer; Lightning's (``self.log``) from
    ``trainer.logged_metrics``; ``LearningRateMonitor``'s from its ``lrs``. Lightning's count as 2.
    """
    from lightning.pytorch.callbacks import LearningRateMonitor

    from lightning_recipe.writer import get_writer

    out: dict[str, int] = {str(k): 2 for k in trainer.logged_metrics}
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, LearningRateMonitor):
            out.update({str(k): 2 for k in getattr(cb, "lrs", {})})
    writer = get_writer(trainer)
    if writer is not None:
        out.update({tag: len(steps) for tag, steps in _SEEN.get(writer, {}).items()})
    return out


def _exact(tag: str) -> str:
    return f"^{re.escape(tag)}$"


def _present(tags: Mapping[str, int], names: Iterable[str | None]) -> list[str]:
    return [n for n in names if n is not None and n in tags]


def _matching(tags: Mapping[str, int], pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return sorted(t for t in tags if rx.search(t))


def build_layout(
    tags: Mapping[str, int], monitor: str | None = "val_loss", train_loss: str | None = None
) -> dict:
    """The custom-scalars layout (``SummaryWriter.add_custom_scalars`` format) for these tags.

    Args:
        tags: the run's scalar tags (values: number of points; only the keys are read).
        monitor: the validation metric the run is judged by (``None``: none).
        train_loss: the logged training loss (``None``: none).

    Returns:
        ``{category: {chart title: ["Multiline", [regex, ...]] or ["Margin", [value, lower, upper]]}}``,
        categories and charts in the order of the recipe; a chart with no logged tag is left out.
    """
    layout: dict[str, dict[str, list]] = {}

    def multiline(category: str, title: str, names: list[str]) -> None:
        if names:
            layout.setdefault(category, {})[title] = ["Multiline", [_exact(n) for n in names]]

    def family(category: str, title: str, prefix: str) -> None:
        # one regex for a per-layer family: the chart also holds the layers of other runs
        if _matching(tags, "^" + re.escape(prefix)):
            layout.setdefault(category, {})[title] = ["Multiline", ["^" + re.escape(prefix)]]

    # the losses
    baselines = _matching(tags, r"^recipe/dumb_baselines/")
    is_loss = monitor is not None and "loss" in monitor
    kind = [b for b in baselines if b.endswith("_loss") == is_loss or b.endswith("/human_baseline")]
    if monitor in tags:
        multiline(
            "recipe: loss",
            f"validation {'loss' if is_loss else monitor} vs dumb baselines",
            _present(tags, [monitor, *kind]),
        )
    multiline(
        "recipe: loss",
        "training loss, raw and smoothed",
        _present(tags, [train_loss, "recipe/training_loss/smoothed"]),
    )
    multiline(
        "recipe: loss",
        "generalization gap (validation minus training loss)",
        _present(tags, ["recipe/generalization/gap"]),
    )
    if tags.get("recipe/overfit_batch/loss", 0) > 1:
        multiline("recipe: loss", "overfit one batch: the copy's loss", ["recipe/overfit_batch/loss"])
    # inside the net
    cat = "recipe: updates, gradients, dead units"
    family(
        cat,
        "log10 update/weight ratio per layer (about -3 is healthy)",
        "recipe/update_health/log10_update_ratio/",
    )
    margin = ["recipe/update_health/log10_update_ratio_" + s for s in ("median", "min", "max")]
    if all(m in tags for m in margin):
        layout.setdefault(cat, {})["log10 update/weight ratio: median, min to max over layers"] = [
            "Margin",
            margin,
        ]
    family(cat, "gradient norm per layer", "recipe/update_health/grad_norm/")
    multiline(cat, "gradient norm, all parameters", _present(tags, ["recipe/update_health/grad_norm"]))
    family(cat, "dead units per layer (fraction)", "recipe/update_health/dead_fraction/")
    # the learning rate
    lrs = [t for t in _matching(tags, r"^lr-") if tags[t] > 0]
    simulated = _matching(tags, r"^recipe/lr_schedule/simulated_lr")
    multiline(
        "recipe: learning rate",
        "learning rate: real (LearningRateMonitor) and as audited (LRScheduleAudit)",
        lrs + simulated,
    )
    # predictions and filters
    cat = "recipe: predictions, first-layer filters"
    multiline(
        cat, "prediction jitter on the fixed batch", _present(tags, ["recipe/prediction_dynamics/jitter"])
    )
    multiline(
        cat,
        "mean probability of the true class on the fixed batch",
        _present(tags, ["recipe/prediction_dynamics/mean_true_prob"]),
    )
    multiline(
        cat, "first-layer filters: smoothness and change from init", _matching(tags, r"^recipe/first_layer/")
    )
    return layout


def _find(trainer: Trainer, name: str) -> Any:
    return next((cb for cb in trainer.callbacks if type(cb).__name__ == name), None)  # type: ignore[attr-defined]


def monitor_of(trainer: Trainer) -> tuple[str, str]:
    """``(monitor, mode)`` of the run: those of the recipe's ``EarlyStopping`` or ``DumbBaselines``."""
    for name in ("EarlyStopping", "DumbBaselines", "GeneralizationCheck"):
        cb = _find(trainer, name)
        if cb is not None and isinstance(getattr(cb, "monitor", None), str):
            mode = getattr(cb, "mode", "min")
            return cb.monitor, mode if mode in ("min", "max") else "min"
    return "val_loss", "min"


def train_loss_of(trainer: Trainer, tags: Mapping[str, int]) -> str | None:
    """The logged training loss: ``TrainingLossCheck``'s monitor, else the first usual name logged."""
    from lightning_recipe.core.checks.training_loss import METRIC_KEYS

    cb = _find(trainer, "TrainingLossCheck")
    if cb is not None and isinstance(getattr(cb, "monitor", None), str) and cb.monitor in tags:
        return cb.monitor
    return next((k for k in METRIC_KEYS if k in tags), None)


def metric_tags(trainer: Trainer) -> list[str]:
    """The HParams metrics of the run: the report's counts, the best monitored value, one-off numbers."""
    monitor, _ = monitor_of(trainer)
    out = ["recipe/report/fail", "recipe/report/warn", "recipe/report/pass", f"recipe/report/best_{monitor}"]
    names = {type(cb).__name__ for cb in trainer.callbacks}  # type: ignore[attr-defined]
    for name, tags in ONE_OFF_METRICS.items():
        if name in names:
            out.extend(tags)
    return out


def _hparam_value(value: Any) -> int | float | str | bool | None:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None:
        return "None"
    if isinstance(value, type):
        return value.__name__
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = _hparam_value(value)


def hparams_of(trainer: Trainer, pl_module: LightningModule) -> dict[str, int | float | str | bool]:
    """The run's hyperparameters: the module's and datamodule's ``hparams``, then the recipe's settings."""
    params: dict[str, Any] = {}
    _flatten("", dict(getattr(pl_module, "hparams", {}) or {}), params)
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        _flatten("", dict(getattr(datamodule, "hparams", {}) or {}), params)
    seed = _find(trainer, "FixedSeed")
    if seed is not None:
        params["recipe/seed"] = _hparam_value(getattr(seed, "seed", None))
    monitor, mode = monitor_of(trainer)
    params["recipe/monitor"] = f"{monitor} ({mode})"
    optimizers = getattr(trainer, "optimizers", None) or []
    if optimizers:
        params["recipe/optimizer"] = type(optimizers[0]).__name__
        groups = getattr(optimizers[0], "param_groups", None) or [{}]
        if "lr" in groups[0]:
            params["recipe/lr"] = _hparam_value(groups[0]["lr"])
    params["recipe/max_epochs"] = _hparam_value(trainer.max_epochs)
    params["recipe/max_steps"] = _hparam_value(trainer.max_steps)
    checks = {type(cb).__name__ for cb in trainer.callbacks if hasattr(cb, "findings")}  # type: ignore[attr-defined]
    checks.discard("RecipeReport")
    params["recipe/checks"] = len(checks)
    return {k: v for k, v in params.items() if v is not None}


# ---------------------------------------------------------------------- writing (rank zero)
def write_hparams_session(trainer: Trainer, pl_module: LightningModule) -> bool:
    """Write the HParams experiment and session start (at fit start); ``False`` without TensorBoard."""
    from torch.utils.tensorboard.summary import hparams

    from lightning_recipe.writer import get_writer

    writer = get_writer(trainer) if trainer.is_global_zero else None
    if writer is None:
        return False
    exp, ssi, _ = hparams(hparams_of(trainer, pl_module), dict.fromkeys(metric_tags(trainer), 0.0))
    file_writer = writer._get_file_writer()  # the public add_hparams writes to a new sub-run instead
    file_writer.add_summary(exp)
    file_writer.add_summary(ssi)
    writer.flush()
    return True


def write_end_of_fit(
    trainer: Trainer,
    counts: Mapping[str, int],
    best: float | None,
    status: str = "success",
    hparams: bool = True,
) -> None:
    """The custom-scalars layout, and with ``hparams`` the metric values and the session's end (rank zero)."""
    from lightning_recipe import writer as recipe_logging

    writer = recipe_logging.get_writer(trainer) if trainer.is_global_zero else None
    if writer is None:
        return
    monitor, _ = monitor_of(trainer)
    if hparams:
        values = {f"recipe/report/{s}": float(counts.get(s, 0)) for s in ("fail", "warn", "pass")}
        if best is not None and math.isfinite(best):
            values[f"recipe/report/best_{monitor}"] = float(best)
        recipe_logging.log_scalars(trainer, values, trainer.global_step)
    tags = scalar_tags(trainer)
    layout = build_layout(tags, monitor=monitor, train_loss=train_loss_of(trainer, tags))
    if layout:
        writer.add_custom_scalars(layout)
    if not hparams:
        writer.flush()
        return
    writer._get_file_writer().add_summary(_session_end(status))
    writer.flush()


def _session_end(status: str) -> Any:
    """HParams' session-end summary (``tensorboard.plugins.hparams.summary`` would import TensorFlow)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    end = SessionEndInfo(status=Status.Value("STATUS_SUCCESS" if status == "success" else "STATUS_FAILURE"))
    content = HParamsPluginData(session_end_info=end, version=PLUGIN_DATA_VERSION).SerializeToString()
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content))
    return Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=meta)])


def tensorboard_command(logdir: str) -> str:
    """The command that opens TensorBoard on ``logdir`` with this Python's ``tensorboard``, no venv to activate.

    Example:
        >>> tensorboard_command("lightning_logs").split()[1:]
        ['--logdir', 'lightning_logs']
    """
    import os
    import shlex
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    program = exe if os.path.exists(exe) else "tensorboard"
    return f"{shlex.quote(program)} --logdir {shlex.quote(logdir)}"
