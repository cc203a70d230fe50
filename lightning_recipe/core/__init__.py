"""Pure torch/numpy helpers shared by every recipe callback; this package never imports Lightning
(nor matplotlib: figures live in :mod:`lightning_recipe.plots`)."""

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
from lightning_recipe.core.images import is_image_like
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
    "find_layer",
    "fingerprint",
    "first_tensor",
    "infer_task",
    "is_binary_valued",
    "is_image_like",
    "map_tensors",
    "preserved_state",
    "split_batch",
    "targets_from_dataset",
    "trace_layers",
    "validate_key_spec",
]

#: Figure helpers moved to :mod:`lightning_recipe.plots.style`; the old names still resolve here.
_MOVED_TO_PLOTS = (
    "figure_to_array",
    "image_grid",
    "labelled_image_grid_figure",
    "new_figure",
    "to_display_images",
)


def __getattr__(name: str):
    if name in _MOVED_TO_PLOTS:
        from lightning_recipe.plots import style

        return getattr(style, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
