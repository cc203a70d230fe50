"""lightning_recipe: Karpathy's recipe for training neural networks as PyTorch Lightning callbacks.

Add the callbacks to an existing ``Trainer``; change nothing in the ``LightningModule``; read the
evidence in TensorBoard under ``recipe/``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# Public name -> module that defines it. Modules load on first use, so that importing the package
# stays cheap and a callback's dependencies load only when it is used.
_EXPORTS: dict[str, str] = {
    "BatchIndependenceCheck": "lightning_recipe.callbacks.batch_independence",
    "BatchInspector": "lightning_recipe.callbacks.batch_inspector",
    "DataInspector": "lightning_recipe.callbacks.data_inspector",
    "DumbBaselines": "lightning_recipe.callbacks.dumb_baselines",
    "EarlyStopping": "lightning_recipe.callbacks.early_stopping",
    "FinalBiasInit": "lightning_recipe.callbacks.bias_init",
    "Finding": "lightning_recipe.report",
    "FirstLayerFilters": "lightning_recipe.callbacks.first_layer",
    "FixedSeed": "lightning_recipe.callbacks.seed",
    "InputIndependentBaseline": "lightning_recipe.callbacks.input_independent",
    "LRScheduleAudit": "lightning_recipe.callbacks.lr_schedule",
    "LossAtInitCheck": "lightning_recipe.callbacks.loss_at_init",
    "OverfitBatchCheck": "lightning_recipe.callbacks.overfit_batch",
    "PredictionDynamics": "lightning_recipe.callbacks.prediction_dynamics",
    "RecipeCheckError": "lightning_recipe.report",
    "RecipeReport": "lightning_recipe.report",
    "RecipeWarning": "lightning_recipe.report",
    "TrainingLossCheck": "lightning_recipe.callbacks.training_loss",
    "UpdateHealth": "lightning_recipe.callbacks.update_health",
    "inspect_data": "lightning_recipe.callbacks.data_inspector",
    "recipe_callbacks": "lightning_recipe.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightning_recipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from lightning_recipe.callbacks.batch_independence import BatchIndependenceCheck
    from lightning_recipe.callbacks.batch_inspector import BatchInspector
    from lightning_recipe.callbacks.bias_init import FinalBiasInit
    from lightning_recipe.callbacks.data_inspector import DataInspector, inspect_data
    from lightning_recipe.callbacks.dumb_baselines import DumbBaselines
    from lightning_recipe.callbacks.early_stopping import EarlyStopping
    from lightning_recipe.callbacks.first_layer import FirstLayerFilters
    from lightning_recipe.callbacks.input_independent import InputIndependentBaseline
    from lightning_recipe.callbacks.loss_at_init import LossAtInitCheck
    from lightning_recipe.callbacks.lr_schedule import LRScheduleAudit
    from lightning_recipe.callbacks.overfit_batch import OverfitBatchCheck
    from lightning_recipe.callbacks.prediction_dynamics import PredictionDynamics
    from lightning_recipe.callbacks.seed import FixedSeed
    from lightning_recipe.callbacks.training_loss import TrainingLossCheck
    from lightning_recipe.callbacks.update_health import UpdateHealth
    from lightning_recipe.presets import recipe_callbacks
    from lightning_recipe.report import Finding, RecipeCheckError, RecipeReport, RecipeWarning
