"""lightning_recipe: Karpathy's recipe for training neural networks as PyTorch Lightning callbacks.

Add the callbacks to an existing ``Trainer``; change nothing in the ``LightningModule``; read the
evidence in TensorBoard under ``recipe/``.
"""

from lightning_recipe.callbacks.batch_independence import BatchIndependenceCheck
from lightning_recipe.callbacks.batch_inspector import BatchInspector
from lightning_recipe.callbacks.bias_init import FinalBiasInit
from lightning_recipe.callbacks.data_inspector import DataInspector, inspect_data
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
from lightning_recipe.ensemble import EnsembleResult, evaluate_ensemble
from lightning_recipe.findings import Finding, RecipeCheckError, RecipeWarning
from lightning_recipe.presets import recipe_callbacks
from lightning_recipe.report import RecipeReport

__version__ = "0.1.0.dev0"

__all__ = [
    "BatchIndependenceCheck",
    "BatchInspector",
    "DataInspector",
    "DumbBaselines",
    "EarlyStopping",
    "EnsembleResult",
    "FinalBiasInit",
    "Finding",
    "FirstLayerFilters",
    "FixedSeed",
    "GeneralizationCheck",
    "InputIndependentBaseline",
    "LRScheduleAudit",
    "LossAtInitCheck",
    "OverfitBatchCheck",
    "PredictionDynamics",
    "RecipeCheckError",
    "RecipeReport",
    "RecipeWarning",
    "TrainingLossCheck",
    "UpdateHealth",
    "evaluate_ensemble",
    "inspect_data",
    "recipe_callbacks",
]
