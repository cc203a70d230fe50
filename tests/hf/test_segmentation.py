"""A Hugging Face SegFormer (built from its config) on digit masks: coarse logits, per-pixel labels.

SegFormer predicts at a fraction of the labels' resolution and upsamples inside its loss; the checks
compare the logits the loss sees (``core.tasks.upsample_to_targets`` on the one model-call path and
on the watched output), so the bias, the loss at init and the baselines apply instead of "cannot
infer the task". The twin whose images are flipped without their masks is caught by BatchInspector.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_recipe import BatchInspector, DumbBaselines, FinalBiasInit, LossAtInitCheck
from tests.callbacks.test_batch_inspector import _DigitMasks
from tests.helpers import make_trainer
from tests.hf_models import HFModule, tiny_segformer


class _Segmentation(Dataset):
    """Digit masks as Hugging Face dict samples: ``pixel_values`` (3, 32, 32) and ``labels`` (32, 32)."""

    def __init__(self, bug: str | None = None, n: int = 256, start: int = 0) -> None:
        self.base, self.start, self.n = _DigitMasks(bug, n=start + n), start, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, mask = self.base[self.start + i]
        return {"pixel_values": x.expand(3, -1, -1).clone(), "labels": mask}


@pytest.mark.parametrize("bug", [None, "image only"])
def test_segformer_coarse_logits_are_checked_and_masks_flipped_alone_are_caught(tmp_path, bug):
    callbacks = [FinalBiasInit(), LossAtInitCheck(), DumbBaselines(), BatchInspector(every_n_train_steps=1)]
    trainer = make_trainer(tmp_path, callbacks, max_steps=24, limit_val_batches=2, val_check_interval=8)
    train = DataLoader(_Segmentation(bug), batch_size=16, shuffle=True)
    val = DataLoader(_Segmentation(None, n=64, start=256), batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(HFModule(tiny_segformer(), lr=3e-3), train, val)
    bias, at_init, dumb, inspector = callbacks
    # the bias of the 1x1 classifier conv is log(prior) of the pixels, and the loss at init matches it
    assert bias.findings[0].status == "pass" and "'model.decode_head.classifier'" in bias.findings[0].message
    prior = torch.stack([_Segmentation()[i]["labels"] for i in range(256)]).float().mean()
    assert bias.applied and float(torch.softmax(bias.bias, 0)[1]) == pytest.approx(float(prior), abs=0.02)
    assert at_init.findings[0].status == "pass" and "as expected" in at_init.findings[0].message
    assert [f.status for f in dumb.findings] == ["pass"], dumb.findings[0].message
    misaligned = [f for f in inspector.findings if f.numbers.get("how")]
    if bug is None:
        assert misaligned == [] and [f.status for f in inspector.findings] == ["pass"]
    else:
        assert len(misaligned) == 1 and misaligned[0].numbers["how"] == "mirrored left-right"
