"""Batches whose second element is no target (contrastive pairs), and ``mask`` targets of segmentation.

A real Trainer with ``recipe_callbacks("full")``: the healthy contrastive model gets no warn or fail
(the target-reading checks skip, the overfit check passes); its twin with a far too high temperature
(logits within +-0.2, a loss floor near ln 8) fails the overfit check.
"""

from __future__ import annotations

import warnings

import torch

from lightning_recipe import recipe_callbacks
from lightning_recipe.core.batches import split_batch
from lightning_recipe.core.tasks import float_targets_fit
from tests.helpers import make_trainer
from tests.zoo._models import Contrastive, SegNet, pair_loaders, segmentation_loaders


def _run(tmp_path, model_factory, loaders, epochs=3, **kw):
    callbacks = recipe_callbacks("full", seed=0, **kw)
    model = model_factory()
    trainer = make_trainer(tmp_path, callbacks, max_steps=-1, max_epochs=epochs, log_every_n_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, *loaders)
    return {f.check: f for f in callbacks[-1].findings if f.status != "pass"}, callbacks[-1].findings


def test_float_targets_that_do_not_fit_the_outputs_are_no_targets():
    assert not float_targets_fit(torch.zeros(4, 8, 8), torch.zeros(4, 16))
    assert float_targets_fit(torch.zeros(4, 1), torch.zeros(4))  # regression head
    assert float_targets_fit(torch.zeros(4, 5), torch.zeros(4, 1))  # a broadcasting head
    assert float_targets_fit(torch.zeros(4, 3), torch.zeros(4, 3))


def test_a_mask_key_holds_the_targets():
    parts = split_batch({"image": torch.zeros(2, 1, 4, 4), "mask": torch.zeros(2, 4, 4, dtype=torch.long)})
    assert parts.target_key == "mask" and parts.input_key == "image"


def test_contrastive_pairs_stay_silent_and_a_bounded_loss_fails(tmp_path):
    bad, findings = _run(tmp_path / "healthy", Contrastive, pair_loaders())
    assert {f.status for f in bad.values()} <= {"skipped"}, {k: f.message for k, f in bad.items()}
    [overfit] = [f for f in findings if f.check == "OverfitBatchCheck"]
    assert overfit.status == "pass" and "no targets found" in overfit.message, overfit.message
    assert overfit.numbers["lowest_loss"] < 0.02 * overfit.numbers["initial_loss"]  # UNKNOWN_FLOOR is 0.05

    bad, _ = _run(tmp_path / "bug", lambda: Contrastive(temperature=5.0), pair_loaders())
    assert bad["OverfitBatchCheck"].status == "fail", bad["OverfitBatchCheck"].message
    assert (
        bad["OverfitBatchCheck"].numbers["lowest_loss"]
        > 0.5 * bad["OverfitBatchCheck"].numbers["initial_loss"]
    )


def test_segmentation_masks_are_read_and_softmax_before_the_loss_is_caught(tmp_path):
    bad, _ = _run(tmp_path / "healthy", SegNet, segmentation_loaders(), epochs=3)
    assert {f.status for f in bad.values()} <= {"skipped"}, {k: f.message for k, f in bad.items()}
    assert {"LossAtInitCheck", "DumbBaselines", "InputIndependentBaseline", "FinalBiasInit"}.isdisjoint(bad)

    bad, _ = _run(tmp_path / "bug", lambda: SegNet(softmax_bug=True), segmentation_loaders(), epochs=3)
    assert bad["LossAtInitCheck"].status == "fail"
    assert "softmax applied twice" in bad["LossAtInitCheck"].message
    assert bad["OverfitBatchCheck"].status != "pass"
