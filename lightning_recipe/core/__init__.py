"""Pure torch/numpy helpers shared by every recipe callback; this package never imports Lightning."""

from lightning_recipe.core.batches import (
    INPUT_KEYS,
    TARGET_KEYS,
    BatchParts,
    KeySpec,
    batch_size_of,
    first_tensor,
    map_tensors,
    split_batch,
    validate_key_spec,
)
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.fingerprint import fingerprint
from lightning_recipe.core.plots import (
    figure_to_array,
    image_grid,
    is_image_like,
    labelled_image_grid_figure,
    new_figure,
    to_display_images,
)
from lightning_recipe.core.state import RNGState, preserved_state
from lightning_recipe.core.stats import (
    TargetStats,
    binary_entropy,
    collect_target_stats,
    entropy,
    targets_from_dataset,
)
from lightning_recipe.core.tasks import (
    TASKS,
    Task,
    TaskLiteral,
    check_task_argument,
    infer_task,
    is_binary_valued,
)
from lightning_recipe.core.tracing import LayerRecord, LayerTrace, find_layer, trace_layers

__all__ = [
    "INPUT_KEYS",
    "TARGET_KEYS",
    "TASKS",
    "ArgumentError",
    "BatchParts",
    "KeySpec",
    "LayerRecord",
    "LayerTrace",
    "RNGState",
    "TargetStats",
    "Task",
    "TaskLiteral",
    "batch_size_of",
    "binary_entropy",
    "check_task_argument",
    "collect_target_stats",
    "entropy",
    "figure_to_array",
    "find_layer",
    "fingerprint",
    "first_tensor",
    "image_grid",
    "infer_task",
    "is_binary_valued",
    "is_image_like",
    "labelled_image_grid_figure",
    "map_tensors",
    "new_figure",
    "preserved_state",
    "split_batch",
    "targets_from_dataset",
    "to_display_images",
    "trace_layers",
    "validate_key_spec",
]
