"""Per-pixel targets against their images: real digits and real photographs, healthy and misaligned."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn import functional as F

from lightning_recipe.core.alignment import label_map, mask_alignment
from lightning_recipe.core.checks.batch_inspector import MaskAlignment
from tests.helpers import digits_arrays


def _digit_masks(n: int = 64, noise: float = 0.0):
    """Digits at 32x32, half of them mirrored left-right with their masks (an augmentation done right)."""
    x, _ = digits_arrays()
    x = F.interpolate(torch.as_tensor(x[:n]), size=(32, 32), mode="bilinear")
    masks = (x[:, 0] > 0.25).long()
    g = torch.Generator().manual_seed(0)
    flip = torch.rand(n, generator=g) < 0.5
    images = torch.where(flip[:, None, None, None], x.flip(-1), x) + noise * torch.randn(x.shape, generator=g)
    return images, torch.where(flip[:, None, None], masks.flip(-1), masks), masks


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_digit_masks_mirrored_with_their_images_fit_and_those_left_behind_do_not(noise):
    images, masks, unflipped = _digit_masks(noise=noise)
    healthy = mask_alignment(images, masks)
    assert len(healthy.evaluable) >= 24 and len(healthy.misaligned) <= 1
    bug = mask_alignment(images, unflipped)  # the image mirrored, its mask not
    assert len(bug.misaligned) >= 0.25 * len(bug.evaluable) and bug.commonest == "mirrored left-right"
    transposed = mask_alignment(images, masks.transpose(-1, -2))
    assert len(transposed.misaligned) >= 0.9 * len(transposed.evaluable)
    assert transposed.commonest == "transposed"


def _photo_patches(n_per_image: int = 32, size: int = 64):
    """Patches of scikit-learn's two sample photographs, each with a mask along its smoothed intensity's median."""
    from sklearn.datasets import load_sample_images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        photos = [
            torch.as_tensor(im.copy()).permute(2, 0, 1).float() / 255 for im in load_sample_images().images
        ]
    g = torch.Generator().manual_seed(0)
    patches, masks = [], []
    for photo in photos:
        for _ in range(n_per_image):
            i, j = (int(torch.randint(0, d - size, (), generator=g)) for d in photo.shape[1:])
            patch = photo[:, i : i + size, j : j + size]
            gray = F.avg_pool2d(patch.mean(0)[None, None], 5, 1, 2, count_include_pad=False)[0, 0]
            patches.append(patch)
            masks.append((gray > gray.median()).long())
    return torch.stack(patches), torch.stack(masks)


def test_masks_of_textured_photographs_are_not_called_misaligned_and_mirrored_ones_are():
    # a mirrored boundary falling into a busy region fits by chance unless edges are read locally
    x, masks = _photo_patches()
    judged = MaskAlignment()
    assert all(judged.add(x[i : i + 16], masks[i : i + 16], step=i) is None for i in range(0, 64, 16))
    assert judged.misaligned <= 1 and judged.bounded == 64
    mirrored = MaskAlignment()
    found = [mirrored.add(x[i : i + 16], masks[i : i + 16].flip(-1), step=i) for i in range(0, 64, 16)]
    status, message, numbers = next(v for v in found if v is not None)
    assert status == "warn" and numbers["how"] == "mirrored left-right" and "at step 0" in message
    assert found[-1] is None  # said once: it stops scoring after the warning


def test_mask_alignment_waits_for_enough_samples_and_says_once_per_instance_what_it_saw():
    images, _, unflipped = _digit_masks(n=16)
    tally = MaskAlignment()
    assert tally.add(images[:2], unflipped[:2], step=0) is None  # two samples: too few to judge
    found = tally.add(images[2:], unflipped[2:], step=1)
    assert found is not None and found[2]["judged"] >= tally.least


def test_label_map_reads_masks_and_leaves_what_is_not_one_alone():
    x = torch.zeros(2, 3, 8, 8)
    one_hot = F.one_hot(torch.randint(0, 3, (2, 8, 8)), 3).permute(0, 3, 1, 2).float()
    assert torch.equal(label_map(x, one_hot), one_hot.argmax(1))
    assert label_map(x, torch.ones(2, 1, 8, 8, dtype=torch.bool)).dtype == torch.long
    assert torch.equal(label_map(x, one_hot.long()), one_hot.argmax(1))  # integer one-hot masks too
    assert label_map(x, torch.randint(0, 2, (2, 8, 8)).float()) is not None  # a float binary mask
    assert label_map(x, torch.rand(2, 8, 8)) is None  # a depth map
    assert label_map(x, torch.randint(0, 256, (2, 1, 8, 8)).float()) is None  # a target image of whole values
    assert label_map(x, torch.rand(2, 3, 8, 8) * 4) is None  # a target image (denoising)
    assert label_map(x, torch.zeros(2, 4, 4, dtype=torch.long)) is None  # another resolution
    assert label_map(x, torch.tensor([0, 1])) is None and label_map(x, None) is None
    assert mask_alignment(x, torch.tensor([0, 1])).evaluable == []


def _dilated(masks: torch.Tensor, r: int) -> torch.Tensor:
    return (F.max_pool2d(masks[:, None].float(), 2 * r + 1, 1, r)[:, 0] > 0).long()


@pytest.mark.parametrize("grow", [2, 3])
def test_coarse_masks_that_sit_off_the_edges_fit_random_mirrorings_and_stay_silent(grow):
    # grown by 2-3 px, a digit's mask lies in the dark around it: some mirrored version crosses the
    # digit by chance (mostly the transpose), but not in one way for enough samples
    images, masks, _ = _digit_masks(n=128)
    tally = MaskAlignment()
    assert all(
        tally.add(images[i : i + 16], _dilated(masks, grow)[i : i + 16], step=i) is None
        for i in range(0, 128, 16)
    )
    assert tally.misaligned > 0  # it did see misfits: the verdict, not the scores, keeps it silent
    x, photo_masks = _photo_patches()
    assert MaskAlignment().add(x, _dilated(photo_masks, 6), step=0) is None


def test_a_mask_rotated_against_its_image_is_named_rotated():
    images, masks, _ = _digit_masks(n=32)
    status, message, numbers = MaskAlignment().add(images, masks.flip((-2, -1)), step=0)
    assert status == "warn" and numbers["how"] == "rotated 180°" and "180° rotation" in message
