"""``recipe_callbacks``: the callbacks for one stage of the recipe, in one line.

Example:
    >>> from lightning_recipe import recipe_callbacks
    >>> [type(cb).__name__ for cb in recipe_callbacks("init", seed=0)]
    ['FixedSeed', 'FinalBiasInit', 'LossAtInitCheck', 'RecipeReport']
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lightning.pytorch import Callback

from lightning_recipe.core.budget import ONE_TIME_SHARE, check_one_time, check_overhead, split_share
from lightning_recipe.core.tasks import TaskArg

__all__ = ["STAGES", "Stage", "recipe_callbacks"]

Stage = Literal["data", "init", "skeleton", "overfit", "regularize", "full"]

_SKELETON = (
    "FixedSeed",
    "BatchInspector",
    "FinalBiasInit",
    "LossAtInitCheck",
    "BatchIndependenceCheck",
    "OverfitBatchCheck",
    "InputIndependentBaseline",
    "DumbBaselines",
    "PredictionDynamics",
    "TrainingLossCheck",
    "LRScheduleAudit",
)
_OVERFIT = (*_SKELETON, "UpdateHealth", "FirstLayerFilters", "EarlyStopping")
_REGULARIZE = (*_OVERFIT, "GeneralizationCheck")

#: The callbacks of each stage, in the order they are returned (``RecipeReport`` is appended).
STAGES: dict[str, tuple[str, ...]] = {
    "data": ("DataInspector", "BatchInspector"),
    "init": ("FixedSeed", "FinalBiasInit", "LossAtInitCheck"),
    "skeleton": _SKELETON,
    "overfit": _OVERFIT,
    "regularize": _REGULARIZE,
    "full": ("DataInspector", *_REGULARIZE),
}

# ``monitor``/``mode`` mean the validation metric only for these (TrainingLossCheck's ``monitor``
# is a training metric): they are passed to these alone.
_VALIDATION_MONITORS = ("EarlyStopping", "DumbBaselines")


def _cls(name: str) -> type[Callback]:
    from lightning_recipe import callbacks

    return getattr(callbacks, name)


def recipe_callbacks(
    stage: Stage = "skeleton",
    seed: int = 1337,
    monitor: str = "val_loss",
    mode: str | None = None,
    task: TaskArg = "auto",
    input_key: Any = None,
    target_key: Any = None,
    on_fail: str = "warn",
    exclude: Sequence[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    report: bool = True,
    overhead: float = 0.03,
    one_time: float | None = ONE_TIME_SHARE,
) -> list[Callback]:
    """Return the recipe callbacks of a stage, ready for ``Trainer(callbacks=...)``.

    Stages (each a step further in the recipe):

    * ``"data"``: :class:`DataInspector`, :class:`BatchInspector` ("become one with the data").
    * ``"init"``: :class:`FixedSeed`, :class:`FinalBiasInit`, :class:`LossAtInitCheck`.
    * ``"skeleton"``: seed, batch inspector, bias init, loss at init, batch independence, overfit
      one batch, input-independent and dumb baselines, prediction dynamics, training-loss check,
      LR-schedule audit ("set up the end-to-end training/evaluation skeleton").
    * ``"overfit"``: the skeleton plus :class:`UpdateHealth`, :class:`FirstLayerFilters` and
      :class:`EarlyStopping` (``restore_best_weights=True``, ``strict=False``: a run that never logs
      ``monitor`` gets a ``skipped`` finding).
    * ``"regularize"``: ``"overfit"`` plus :class:`GeneralizationCheck` (underfitting, overfitting,
      leave it training).
    * ``"full"``: everything, :class:`DataInspector` included.

    A :class:`RecipeReport` is appended unless ``report=False``. Every callback stays usable on its
    own; this function only saves typing.

    Args:
        stage: one of the stages above.
        seed: the :class:`FixedSeed` seed (the seed is set when this function is called: call it
            before building the model).
        monitor: the validation metric for :class:`EarlyStopping` and :class:`DumbBaselines`.
        mode: ``"min"`` or ``"max"`` for ``monitor`` (default: ``"min"`` for :class:`EarlyStopping`,
            inferred from the metric's name by :class:`DumbBaselines`).
        task, input_key, target_key, on_fail: passed to every callback that takes them.
        exclude: class names to leave out.
        overrides: per class name, keyword arguments for its constructor, e.g.
            ``{"PredictionDynamics": {"every_n_train_steps": 20}}``.
        report: append a :class:`RecipeReport`.
        overhead: the fraction of training time the periodic checks may take together (default 3%):
            split equally among the callbacks of the stage that take ``overhead=``, each of which
            stretches its default cadence to stay within its share (first and last points and the
            points a verdict needs are always taken). An explicit cadence in ``overrides`` (e.g.
            ``every_n_train_steps``) is fixed and ignores the budget. ``RecipeReport`` shows what
            each callback cost.
        one_time: the share of the planned run the one-time checks before training may take together
            (default 5%, or ``ONE_TIME_FLOOR_S`` = 1 s if that is more; README "Cost"): passed to
            every callback that takes ``one_time=``, which scales its step count to its part of
            the budget, never below what its verdict needs (the finding then says so). Explicit
            step counts in ``overrides`` (``steps=``, ``max_steps=``) are kept. ``None``: no budget.

    Raises:
        ValueError: for an unknown stage or class name.
    """
    if stage not in STAGES:
        raise ValueError(f"recipe_callbacks(stage={stage!r}): unknown stage; pass one of {sorted(STAGES)}.")
    overrides = dict(overrides or {})
    from lightning_recipe import callbacks

    known = sorted(set(callbacks.__all__) - {"RecipeCallback"})
    for name in list(exclude) + list(overrides):
        if name not in known:
            raise ValueError(
                f"recipe_callbacks: unknown callback {name!r} in exclude/overrides; pass class names from {known}."
            )
    check_overhead("recipe_callbacks", overhead)
    one_time = check_one_time("recipe_callbacks", one_time)
    budgeted = [
        n
        for n in STAGES[stage]
        if n not in exclude and "overhead" in inspect.signature(_cls(n).__init__).parameters
    ]
    shares = split_share(float(overhead), budgeted)
    shared = {"task": task, "input_key": input_key, "target_key": target_key, "on_fail": on_fail}
    callbacks: list[Callback] = []
    for name in STAGES[stage]:
        if name in exclude:
            continue
        cls = _cls(name)
        params = inspect.signature(cls.__init__).parameters
        kwargs: dict[str, Any] = {k: v for k, v in shared.items() if k in params}
        if name in _VALIDATION_MONITORS:
            kwargs["monitor"] = monitor
            if mode is not None or name == "EarlyStopping":
                kwargs["mode"] = mode or "min"
        if name in shares:
            kwargs["overhead"] = shares[name]
        if "one_time" in params:
            kwargs["one_time"] = one_time
        if name == "FixedSeed":
            kwargs["seed"] = seed
        if name == "EarlyStopping":
            kwargs.setdefault("restore_best_weights", True)
            # a module that logs no `monitor` (no validation loop) gets a `skipped` finding, not a crash
            kwargs.setdefault("strict", False)
        kwargs.update(overrides.get(name, {}))
        callbacks.append(cls(**kwargs))
    if report and "RecipeReport" not in exclude:
        callbacks.append(_cls("RecipeReport")(**overrides.get("RecipeReport", {})))
    return callbacks
