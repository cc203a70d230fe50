"""Batches the callbacks read themselves are prepared as Lightning's loop prepares them (precision)."""

from __future__ import annotations

import warnings

from lightning_recipe.callbacks import (
    DumbBaselines,
    FinalBiasInit,
    InputIndependentBaseline,
    PredictionDynamics,
)
from tests.helpers import LitModel, digits_arrays, loader, make_trainer, mlp


def test_bf16_true_inputs_are_cast_like_the_training_steps(tmp_path):
    """Under ``precision="bf16-true"`` the loop casts each batch (``convert_input``) before the step;
    the batches FinalBiasInit, InputIndependentBaseline and PredictionDynamics read from the loaders
    are cast too (they skipped with "mat1 and mat2 must have the same dtype, but got Float and BFloat16")."""
    x, y = digits_arrays()
    callbacks = [
        FinalBiasInit(),
        InputIndependentBaseline(steps=20, max_steps=40),
        PredictionDynamics(),
        DumbBaselines(),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = make_trainer(tmp_path, callbacks, max_steps=30, precision="bf16-true", limit_val_batches=2)
        trainer.fit(
            LitModel(mlp(64, 10)), loader(x[:512], y[:512], shuffle=True), loader(x[1000:1256], y[1000:1256])
        )
    findings = [f for cb in callbacks for f in cb.findings]
    assert [(f.check, f.message) for f in findings if f.status != "pass"] == []
    assert {f.check for f in findings} >= {"FinalBiasInit", "InputIndependentBaseline", "DumbBaselines"}
