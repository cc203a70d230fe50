"""An audio model built from its config: wav2vec 2.0 on tones (``input_values`` waveforms)."""

from __future__ import annotations

import warnings

from lightning_recipe.callbacks import BatchIndependenceCheck, InputIndependentBaseline
from tests.helpers import make_trainer
from tests.hf_models import HFModule, tiny_wav2vec2, tone_loader


def _fit(tmp_path, check, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_trainer(tmp_path, [check], **{"max_steps": 1, **kw}).fit(
            HFModule(tiny_wav2vec2()), tone_loader(shuffle=True), tone_loader(64, seed=1)
        )
    [finding] = check.findings
    return finding


def test_batch_independence_charts_a_model_that_sets_requires_grad_on_its_input(tmp_path):
    """wav2vec 2.0's feature encoder sets ``requires_grad`` on a view of its input in training mode,
    which fails on an input that already requires grad: the chart is taken in eval mode instead (it
    was "skipped: the forward pass failed (RuntimeError: you can only change requires_grad flags of
    leaf variables)")."""
    finding = _fit(tmp_path, BatchIndependenceCheck(), limit_val_batches=0)
    assert finding.status == "pass", finding.message


def test_input_independent_trains_copies_whose_layers_drop_out(tmp_path):
    """LayerDrop leaves a skipped layer's parameters without a gradient on some steps (it was
    "skipped: a copy of the module failed (RuntimeError: The size of tensor a ... must match ...)")."""
    finding = _fit(tmp_path, InputIndependentBaseline(steps=20, max_steps=40))
    assert finding.status != "skipped" or "a copy of the module failed" not in finding.message, (
        finding.message
    )
