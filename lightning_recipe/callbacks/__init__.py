"""The recipe callbacks, one module per recipe step, each a ``lightning.pytorch.Callback``.

Import them from here (as from ``lightning.pytorch.callbacks``) or from ``lightning_recipe``.

Example:
    >>> from lightning_recipe.callbacks import LossAtInitCheck, RecipeReport
    >>> LossAtInitCheck.recipe_step
    'verify loss @ init'
"""

from lightning_recipe.callbacks.base import RecipeCallback
from lightning_recipe.callbacks.batch_independence import BatchIndependenceCheck
from lightning_recipe.callbacks.batch_inspector import BatchInspector
from lightning_recipe.callbacks.bias_init import FinalBiasInit
from lightning_recipe.callbacks.data_inspector import DataInspector
from lightning_recipe.callbacks.dumb_baselines import DumbBaselines
from lightning_recipe.callbacks.early_stopping import EarlyStopping
from lightning_recipe.callbacks.first_layer import FirstLayerFilters
from lightning_recipe.callbacks.generalization import GeneralizationCheck
from lightning_recipe.callbacks.input_independent import InputIndependentBaseline
from lightning_recipe.callbacks.loss_at_init import LossAtInitCheck
from lightning_recipe.callbacks.lr_schedule import LRScheduleAudit
from lightning_recipe.callbacks.overfit_batch import OverfitBatchCheck
from lightning_recipe.callbacks.prediction_dynamics import PredictionDynamics
from lightning_recipe.callbacks.seed import FixedSeed
from lightning_recipe.callbacks.training_loss import TrainingLossCheck
from lightning_recipe.callbacks.update_health import UpdateHealth
from lightning_recipe.report import RecipeReport

__all__ = [
    "BatchIndependenceCheck",
    "BatchInspector",
    "DataInspector",
    "DumbBaselines",
    "EarlyStopping",
    "FinalBiasInit",
    "FirstLayerFilters",
    "FixedSeed",
    "GeneralizationCheck",
    "InputIndependentBaseline",
    "LRScheduleAudit",
    "LossAtInitCheck",
    "OverfitBatchCheck",
    "PredictionDynamics",
    "RecipeCallback",
    "RecipeReport",
    "TrainingLossCheck",
    "UpdateHealth",
]
