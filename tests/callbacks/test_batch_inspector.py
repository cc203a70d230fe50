"""BatchInspector on real Trainer runs, read back from the event files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lightning_recipe import RecipeCheckError, RecipeWarning
from lightning_recipe.callbacks.batch_inspector import BatchInspector, label_text
from tests.helpers import (
    LitModel,
    assert_same_params,
    breast_cancer_arrays,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    mlp,
    png_shape,
    read_events,
    small_cnn,
)

P = "recipe/batch_inspector/"


def _digits(scale: float = 1.0, n: int = 256):
    x, y = digits_arrays()
    return loader(x[:n] * scale, y[:n], batch_size=32)


def _fit(tmp_path, cb, data, net=None, **kw):
    torch.manual_seed(0)
    model = LitModel(net or small_cnn())
    trainer = make_trainer(tmp_path, [cb], **kw)
    trainer.fit(model, data)
    return trainer, model


def test_logs_labelled_grid_stats_and_histograms_at_expected_steps(tmp_path):
    cb = BatchInspector(every_n_train_steps=3, num_samples=16)
    trainer, _ = _fit(tmp_path, cb, _digits(), max_steps=7)
    ev = read_events(trainer.logger)
    assert [s for s, *_ in ev.images(P + "images")] == [0, 3, 6]
    _step, width, height, png = ev.images(P + "images")[0]
    assert png_shape(png)[:2] == (height, width)
    assert 300 < width < 700 and 150 < height < 400  # 8 x 2 tiles with labels: small
    assert [s for s, _ in ev.scalars(P + "input_std")] == [0, 3, 6]
    assert ev.histograms(P + "inputs") and ev.histograms(P + "labels")
    text = ev.texts(P + "channel_stats")[0][1]
    assert "image" in text and "| channel | mean | std | min | max |" in text
    assert [f.status for f in cb.findings] == ["pass"]


def test_raw_pixels_warn_not_normalised(tmp_path):
    cb = BatchInspector()
    _fit(tmp_path, cb, _digits(scale=255.0), max_steps=2)
    assert [f.status for f in cb.findings] == ["warn"]
    assert cb.findings[0].message.startswith("inputs are not normalised")
    assert cb.findings[0].numbers["mean"] > 50


def test_double_normalisation_warns_near_constant(tmp_path):
    cb = BatchInspector()
    _fit(tmp_path, cb, _digits(scale=1 / 255.0), max_steps=2)
    assert [f.numbers.get("std") < 0.01 for f in cb.findings] == [True]
    assert "nearly constant" in cb.findings[0].message


@pytest.mark.parametrize("scale", [1.0, 16.0 / 16.0])
def test_clean_digits_scaled_by_16_are_silent(tmp_path, scale):
    cb = BatchInspector()
    _fit(tmp_path, cb, _digits(scale=scale), max_steps=3)
    assert [f.status for f in cb.findings] == ["pass"]


def test_zscored_tabular_is_silent_and_logs_rows_table(tmp_path):
    x, y = breast_cancer_arrays()
    assert np.abs(x).max() > 3  # z-scored data reaches beyond +-3: healthy
    cb = BatchInspector(num_samples=4)
    trainer, _ = _fit(tmp_path, cb, loader(x, y, batch_size=64), net=mlp(30, 2), max_steps=2)
    assert [f.status for f in cb.findings] == ["pass"]
    rows = read_events(trainer.logger).texts(P + "rows")[0][1]
    assert rows.splitlines()[0].startswith("| # | label | x0 | x1 |")
    assert len([line for line in rows.splitlines() if line.startswith("| ")]) == 2 + 4


def test_nan_in_batch_fails_and_raises_under_on_fail_raise(tmp_path):
    x, y = breast_cancer_arrays()
    x = x.copy()
    x[5, 2] = np.nan
    cb = BatchInspector(on_fail="raise")
    with pytest.raises(RecipeCheckError, match="NaN"):
        _fit(tmp_path, cb, loader(x, y, batch_size=64), net=mlp(30, 2), max_steps=2)


def test_tokens_are_decoded(tmp_path):
    vocab = "abcdefghij"

    class Tok(LitModel):
        def forward(self, x):
            return self.net(x.float())

    ids = torch.randint(0, 10, (64, 6))
    cb = BatchInspector(decode=lambda t: "".join(vocab[i] for i in t.tolist()), num_samples=3)
    trainer = make_trainer(tmp_path, [cb], max_steps=1)
    trainer.fit(Tok(mlp(6, 2)), loader(ids, torch.randint(0, 2, (64,)), batch_size=16))
    text = read_events(trainer.logger).texts(P + "decoded")[0][1]
    first = "".join(vocab[i] for i in ids[0].tolist())
    assert text.startswith("0. **[") and first in text
    assert [f.status for f in cb.findings] == ["pass"]


def test_denormalize_is_applied_for_display_only(tmp_path):
    seen = []

    def denorm(x):
        seen.append(x.shape)
        return x * 2 + 1

    cb = BatchInspector(denormalize=denorm, num_samples=5)
    _fit(tmp_path, cb, _digits(), max_steps=1)
    assert seen == [torch.Size([5, 1, 8, 8])]
    assert cb.last_stats is not None and cb.last_stats.overall_max <= 1.0


def test_label_text():
    assert label_text(torch.tensor(3)) == "3"
    assert label_text(torch.tensor([1, 0, 1])) == "0,2"
    assert label_text(torch.tensor(0), ["cat"]) == "cat"


def test_no_observer_effect(tmp_path):
    def run(callbacks):
        torch.manual_seed(0)
        model = LitModel(small_cnn(dropout=0.3))
        x, y = digits_arrays()
        trainer = make_trainer(tmp_path, callbacks, max_steps=6, logger=False)
        torch.manual_seed(1)
        trainer.fit(model, loader(x[:200], y[:200], batch_size=32, shuffle=True))
        return final_params(model)

    assert_same_params(run([]), run([BatchInspector(every_n_train_steps=2)]))


def test_quiet_during_sanity_check(tmp_path):
    cb = BatchInspector()
    trainer = make_trainer(tmp_path, [cb], max_steps=0, num_sanity_val_steps=2)
    trainer.fit(LitModel(small_cnn()), _digits(), _digits())
    assert cb.findings == []


def test_state_dict_pickle_and_resume(tmp_path):
    cb = BatchInspector(every_n_train_steps=2)
    trainer, _model = _fit(tmp_path, cb, _digits(), max_steps=3, enable_checkpointing=True)
    state = cb.state_dict()
    assert state["last_step"] == 2 and state["inspected"] == 2
    other = BatchInspector()
    other.load_state_dict(state)
    assert other.state_dict() == state
    assert pickle.loads(pickle.dumps(other)).state_dict() == state
    ckpt = tmp_path / "c.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = BatchInspector(every_n_train_steps=2)
    t2 = make_trainer(tmp_path / "r", [resumed], max_steps=5)
    t2.fit(LitModel(small_cnn()), _digits(), ckpt_path=str(ckpt))
    assert resumed._inspected == 3  # step 4 only; the pass finding is not repeated
    assert resumed.findings == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every_n_train_steps": 0}, ValueError, r"BatchInspector\(every_n_train_steps=0\)"),
        ({"num_samples": "8"}, TypeError, r"num_samples='8'"),
        ({"denormalize": 3}, TypeError, r"denormalize=3\): pass a callable"),
        ({"decode": "x"}, TypeError, r"decode='x'\): pass a callable"),
        ({"class_names": "abc"}, TypeError, r"class_names='abc'"),
        ({"normalised_scale": -1}, ValueError, r"normalised_scale=-1"),
        ({"input_key": 1.5}, TypeError, r"input_key=1.5"),
        ({"on_fail": "explode"}, ValueError, r"on_fail='explode'"),
        ({"ignore_index": 1.5}, TypeError, r"BatchInspector\(ignore_index=1.5\): pass the integer label"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchInspector(**kwargs)


@pytest.mark.expect_callback_error
def test_failing_decode_names_the_argument(tmp_path):
    class Tok(LitModel):
        def forward(self, x):
            return self.net(x.float())

    cb = BatchInspector(decode=lambda t: 1 / 0)
    trainer = make_trainer(tmp_path, [cb], max_steps=1)
    with pytest.warns(RecipeWarning, match=r"BatchInspector\(decode=...\): the callable failed"):
        trainer.fit(
            Tok(mlp(6, 2)), loader(torch.randint(0, 9, (16, 6)), torch.randint(0, 2, (16,)), batch_size=8)
        )
    assert trainer.global_step == 1  # the inspector stops itself; training goes on
    assert cb.findings[-1].status == "skipped" and "decode=" in cb.findings[-1].message


class _SrcTgt(torch.utils.data.Dataset):
    """A dict batch with keys the inference does not know: ``{"src": x, "tgt": y}``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"src": self.x[i], "tgt": self.y[i]}


class _DictModel(LitModel):
    def training_step(self, batch, batch_idx):
        return self.loss_fn(self(batch["src"]), batch["tgt"])


def _src_tgt_loader():
    x, y = breast_cancer_arrays()
    return torch.utils.data.DataLoader(
        _SrcTgt(torch.as_tensor(x[:64]), torch.as_tensor(y[:64])), batch_size=16
    )


def test_unknown_dict_keys_are_skipped_naming_input_key_and_training_goes_on(tmp_path):
    cb = BatchInspector(every_n_train_steps=1)
    trainer = make_trainer(tmp_path, [cb], max_steps=3)
    with pytest.warns(
        RecipeWarning, match=r"skipped, because found no inputs .*\['src', 'tgt'\].*`input_key=`"
    ):
        trainer.fit(_DictModel(mlp(30, 2)), _src_tgt_loader())
    assert trainer.global_step == 3
    assert [f.status for f in cb.findings] == ["skipped"]  # once, not at every inspected step
    assert "pass `input_key=`" in cb.findings[0].message
    assert P + "input_std" not in read_events(trainer.logger).all_tags()


def test_unknown_dict_keys_with_keys_passed_are_inspected(tmp_path):
    cb = BatchInspector(input_key="src", target_key="tgt")
    trainer = make_trainer(tmp_path, [cb], max_steps=1)
    trainer.fit(_DictModel(mlp(30, 2)), _src_tgt_loader())
    assert [f.status for f in cb.findings] == ["pass"]
    ev = read_events(trainer.logger)
    assert ev.histograms(P + "labels") and ev.texts(P + "rows")


class _Named(torch.utils.data.Dataset):
    """``(x, "name")`` samples: the targets are strings, not a tensor."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], f"item{i}"


class _Unsupervised(LitModel):
    def training_step(self, batch, batch_idx):
        return self(batch[0]).pow(2).mean()


def test_targets_that_cannot_be_read_still_show_the_inputs(tmp_path):
    x, _ = breast_cancer_arrays()
    x = torch.as_tensor(x[:64])
    cb = BatchInspector()
    trainer = make_trainer(tmp_path, [cb], max_steps=1)
    trainer.fit(_Unsupervised(mlp(30, 2)), torch.utils.data.DataLoader(_Named(x), batch_size=16))
    assert [f.status for f in cb.findings] == ["skipped", "pass"]
    assert "labels skipped (the inputs are shown)" in cb.findings[0].message
    assert "pass `target_key=`" in cb.findings[0].message
    ev = read_events(trainer.logger)
    assert ev.scalars(P + "input_std") and ev.texts(P + "rows") and P + "labels" not in ev.all_tags()


def test_explicit_key_that_does_not_fit_still_raises(tmp_path):
    cb = BatchInspector(input_key="image")
    trainer = make_trainer(tmp_path, [cb], max_steps=1)
    with pytest.raises(ValueError, match=r"input_key='image': no such key in the batch"):
        trainer.fit(_DictModel(mlp(30, 2)), _src_tgt_loader())


def test_ignore_index_is_read_from_the_modules_loss():
    from torch import nn

    from lightning_recipe.callbacks.batch_inspector import loss_ignore_index

    model = nn.Sequential(nn.Linear(2, 2))
    assert loss_ignore_index(model) == -100
    model.loss = nn.CrossEntropyLoss(ignore_index=0)
    assert loss_ignore_index(model) == 0


# ---------------------------------------------------------------------- per-pixel targets and their images
class _DigitMasks(torch.utils.data.Dataset):
    """Digits upscaled to 32x32 with their foreground mask as per-pixel targets, randomly mirrored
    left-right (p=0.5) as an augmentation: ``bug="image only"`` mirrors the image and not its mask,
    ``bug="transposed"`` hands over the mask transposed (a ``view`` where ``permute`` was meant)."""

    def __init__(self, bug: str | None = None, n: int = 256) -> None:
        x, _ = digits_arrays()
        x = torch.nn.functional.interpolate(torch.as_tensor(x[:n]), size=(32, 32), mode="bilinear")
        self.x, self.masks, self.bug = x, (x[:, 0] > 0.25).long(), bug
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        image, mask = self.x[i], self.masks[i]
        if torch.rand((), generator=self.generator) < 0.5:
            image = image.flip(-1)
            mask = mask if self.bug == "image only" else mask.flip(-1)
        return image, mask.T if self.bug == "transposed" else mask


@pytest.mark.parametrize(
    ("bug", "how"), [(None, None), ("image only", "mirrored left-right"), ("transposed", "transposed")]
)
def test_masks_not_mirrored_with_their_images_warn_and_the_healthy_twin_is_silent(tmp_path, bug, how):
    inspector = BatchInspector(every_n_train_steps=1)
    data = torch.utils.data.DataLoader(_DigitMasks(bug), batch_size=16, shuffle=True)
    seg = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    with pytest.warns(RecipeWarning) if bug else _no_recipe_warning():
        trainer, _ = _fit(tmp_path, inspector, data, net=seg, max_steps=3)
    # the grid outlines each mask over its image, the classes it holds above the tile
    assert _outline_pixels(read_events(trainer.logger).images(P + "images")[0][3]) > 100
    found = [f for f in inspector.findings if f.numbers.get("how")]
    if bug is None:
        assert found == [] and [f.status for f in inspector.findings] == ["pass"]
        return
    (finding,) = found  # once per run, though three batches were inspected
    assert finding.status == "warn" and finding.numbers["how"] == how and how in finding.message
    assert finding.numbers["misaligned"] >= 3 and "flip, 180° rotation or transpose" in finding.message
    if bug == "image only":  # about half the samples are mirrored: about half are caught
        assert 0.15 <= finding.numbers["misaligned"] / finding.numbers["judged"] <= 0.8


def _no_recipe_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def guard():
        with warnings.catch_warnings():
            warnings.simplefilter("error", RecipeWarning)
            yield

    return guard()


def _outline_pixels(png: bytes) -> int:
    """Pixels of the outline colour (the red of ``plots.style.OUTLINE``) in a PNG."""
    import io

    from matplotlib import image

    rgb = image.imread(io.BytesIO(png), format="png")[..., :3]
    return int(((rgb[..., 0] > 0.9) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum())


def test_class_labels_draw_no_outlines_and_masks_are_named_by_their_classes(tmp_path):
    from lightning_recipe.core.checks.batch_inspector import mask_of, sample_labels

    trainer, _ = _fit(tmp_path, BatchInspector(), _digits(), max_steps=1)
    assert _outline_pixels(read_events(trainer.logger).images(P + "images")[0][3]) == 0
    x, masks = _DigitMasks()[0]
    found = mask_of(x[None], masks[None])
    assert found.shape == (1, 32, 32) and sample_labels(masks[None], 1, ["ground", "digit"], found) == [
        "mask ground,digit"
    ]
    assert mask_of(x[None], torch.tensor([3])) is None
