"""FirstLayerFilters on real Trainer runs, read back from the event files."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from lightning_recipe.callbacks.first_layer import FirstLayerFilters
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

P = "recipe/first_layer/"


def _digits(n: int = 256, permute: bool = False, shuffle_labels: bool = False):
    x, y = digits_arrays()
    x, y = x[:n].copy(), y[:n].copy()
    rng = np.random.default_rng(0)
    if permute:  # a scrambling bug: every sample's pixels in a different random order
        x = np.stack([xi.reshape(-1)[rng.permutation(64)].reshape(1, 8, 8) for xi in x])
    if shuffle_labels:
        y = rng.permutation(y)
    return loader(x, y, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


def _fit(tmp_path, cb, data=None, net=None, lr=1e-2, optimizer="adam", **kw):
    torch.manual_seed(0)
    model = LitModel(net if net is not None else small_cnn(), lr=lr, optimizer=optimizer)
    trainer = make_trainer(tmp_path, [cb], **kw)
    trainer.fit(model, data if data is not None else _digits())
    return trainer, model


def _grid_size(n: int, k: int) -> tuple[int, int]:
    scale = max(1, min(16, round(48 / k)))
    pad = max(1, scale // 3)
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    return nrows * k * scale + (nrows + 1) * pad, ncols * k * scale + (ncols + 1) * pad


def test_conv_filters_logged_at_init_and_each_epoch_one_tile_per_filter(tmp_path):
    cb = FirstLayerFilters(every_n_epochs=1)
    trainer, _ = _fit(tmp_path, cb, max_epochs=2, max_steps=-1)
    ev = read_events(trainer.logger)
    images = ev.images(P + "filters")
    assert [s for s, *_ in images] == [0, 8, 16]
    h, w = _grid_size(8, 3)  # small_cnn: 8 filters of 3x3
    for _, width, height, png in images:
        assert (height, width) == (h, w) and png_shape(png)[:2] == (h, w)
    assert [s for s, _ in ev.scalars(P + "smoothness")] == [0, 8, 16]
    assert ev.scalars(P + "change_from_init")[0][1] == 0.0
    assert len(ev.histograms(P + "weights")) == 3
    assert cb.layer_name == "net.0"


def test_first_layer_found_by_execution_order_not_declaration(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4 * 16, 10)
            self.stem = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return self.head(torch.relu(nn.functional.max_pool2d(self.stem(x), 2)).flatten(1))

    cb = FirstLayerFilters()
    _fit(tmp_path, cb, net=Net(), max_steps=1)
    assert cb.layer_name == "net.stem"


def test_linear_over_flattened_digits_is_shown_as_8x8_images(tmp_path):
    cb = FirstLayerFilters(max_filters=20)
    trainer, _ = _fit(tmp_path, cb, net=mlp(64, 10, hidden=32), max_steps=1)
    _, width, height, _ = read_events(trainer.logger).images(P + "filters")[0]
    assert (height, width) == _grid_size(20, 8)


def test_tabular_linear_logs_histogram_only_with_skipped_finding(tmp_path):
    x, y = breast_cancer_arrays()
    cb = FirstLayerFilters()
    trainer, _ = _fit(
        tmp_path, cb, data=loader(x, y, batch_size=64), net=mlp(30, 2), max_epochs=1, max_steps=-1
    )
    ev = read_events(trainer.logger)
    assert not ev.has_image(P + "filters")
    assert len(ev.histograms(P + "weights")) == 2
    assert [f.status for f in cb.findings] == ["skipped"]
    assert "histogram only" in cb.findings[0].message


def test_healthy_cnn_on_digits_passes(tmp_path):
    cb = FirstLayerFilters(check_noise_after_epochs=3)
    _fit(tmp_path, cb, data=_digits(n=1000), max_epochs=3, max_steps=-1)
    assert [f.status for f in cb.findings] == ["pass"]
    assert cb.findings[0].numbers["smoothness_gain"] > 0.1


def test_healthy_mlp_on_digits_passes(tmp_path):
    cb = FirstLayerFilters(check_noise_after_epochs=3)
    _fit(tmp_path, cb, data=_digits(n=1000), net=mlp(64, 10), max_epochs=3, max_steps=-1)
    assert [f.status for f in cb.findings] == ["pass"]


def test_healthy_batchnorm_cnn_with_3x3_kernels_passes(tmp_path):
    # normalisation after a 3x3 conv leaves trained filters that need not look smooth: no verdict on
    # their spatial structure, only on whether they moved
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(256, 10),
    )
    cb = FirstLayerFilters(check_noise_after_epochs=3)
    _fit(tmp_path, cb, data=_digits(n=1000), net=net, max_epochs=3, max_steps=-1)
    assert [f.status for f in cb.findings] == ["pass"]


def test_scrambled_pixels_leave_noise_like_filters(tmp_path):
    cb = FirstLayerFilters(check_noise_after_epochs=3)
    _fit(tmp_path, cb, data=_digits(n=1000, permute=True), net=mlp(64, 10), max_epochs=3, max_steps=-1)
    assert [f.status for f in cb.findings] == ["warn"]
    assert "still look like noise" in cb.findings[0].message


def test_tiny_learning_rate_leaves_filters_at_init(tmp_path):
    cb = FirstLayerFilters(check_noise_after_epochs=2)
    _fit(tmp_path, cb, lr=1e-5, optimizer="sgd", max_epochs=2, max_steps=-1)
    assert [f.status for f in cb.findings] == ["warn"]
    assert "barely moved" in cb.findings[0].message


def test_frozen_first_layer_is_not_judged(tmp_path):
    net = small_cnn()
    net[0].requires_grad_(False)
    cb = FirstLayerFilters(check_noise_after_epochs=1)
    _fit(tmp_path, cb, net=net, max_epochs=1, max_steps=-1)
    assert cb.findings == []


def test_constant_init_warns_identical_filters(tmp_path):
    net = small_cnn()
    nn.init.constant_(net[0].weight, 0.1)
    cb = FirstLayerFilters(check_noise_after_epochs=None)
    _fit(tmp_path, cb, net=net, max_steps=2)
    assert [f.status for f in cb.findings] == ["warn"]
    assert "8 of 8 filters" in cb.findings[0].message and "symmetry" in cb.findings[0].message


def test_layer_override_and_unknown_layer_error(tmp_path):
    cb = FirstLayerFilters(layer="net.4")
    _fit(tmp_path, cb, max_steps=1)
    assert cb.layer_name == "net.4" and cb.findings[0].status == "skipped"
    with pytest.raises(ValueError, match=r"FirstLayerFilters: layer='conv1': no such module"):
        _fit(tmp_path, FirstLayerFilters(layer="conv1"), max_steps=1)


def test_no_observer_effect(tmp_path):
    def run(callbacks):
        torch.manual_seed(0)
        model = LitModel(small_cnn(dropout=0.3))
        x, y = digits_arrays()
        trainer = make_trainer(tmp_path, callbacks, max_epochs=2, max_steps=-1, logger=False)
        torch.manual_seed(1)
        trainer.fit(model, loader(x[:96], y[:96], batch_size=32, shuffle=True))
        return final_params(model)

    assert_same_params(run([]), run([FirstLayerFilters(check_noise_after_epochs=1)]))


def test_quiet_during_sanity_check(tmp_path):
    cb = FirstLayerFilters()
    trainer = make_trainer(tmp_path, [cb], max_steps=0, num_sanity_val_steps=2)
    trainer.fit(LitModel(small_cnn()), _digits(), _digits())
    assert cb.findings == [] and cb.history == []


def test_state_dict_pickle_and_resume_keeps_the_init(tmp_path):
    cb = FirstLayerFilters(check_noise_after_epochs=None)
    trainer, _ = _fit(tmp_path, cb, max_epochs=1, max_steps=-1)
    state = cb.state_dict()
    assert state["layer_name"] == "net.0" and state["init_tiles"].shape == (8, 1, 3, 3)
    clone = pickle.loads(pickle.dumps(FirstLayerFilters()))
    clone.load_state_dict(state)
    assert clone.state_dict()["history"] == state["history"]
    ckpt = tmp_path / "c.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = FirstLayerFilters(check_noise_after_epochs=None)
    t2 = make_trainer(tmp_path / "r", [resumed], max_epochs=2, max_steps=-1)
    t2.fit(LitModel(small_cnn()), _digits(), ckpt_path=str(ckpt))
    assert [h[0] for h in resumed.history] == [0, 8, 16]  # no second "init" at the resume step
    assert torch.equal(torch.from_numpy(resumed._init_tiles), state["init_tiles"])
    ev = read_events(t2.logger)
    assert [s for s, *_ in ev.images(P + "filters")] == [16]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every_n_epochs": 0}, ValueError, r"FirstLayerFilters\(every_n_epochs=0\)"),
        ({"max_filters": 2.5}, TypeError, r"max_filters=2.5"),
        ({"check_noise_after_epochs": 0}, ValueError, r"check_noise_after_epochs=0"),
        ({"layer": 3}, TypeError, r"layer=3\): pass the qualified module name"),
        ({"input_key": 1.5}, TypeError, r"input_key=1.5"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        FirstLayerFilters(**kwargs)


class _SrcTgt(torch.utils.data.Dataset):
    """Digits as a dict batch with keys the inference does not know: ``{"src": x, "tgt": y}``."""

    def __init__(self, n: int = 64) -> None:
        x, y = digits_arrays()
        self.x, self.y = torch.as_tensor(x[:n]), torch.as_tensor(y[:n])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"src": self.x[i], "tgt": self.y[i]}


class _DictModel(LitModel):
    def training_step(self, batch, batch_idx):
        return self.loss_fn(self(batch["src"]), batch["tgt"])


def _fit_dict(tmp_path, cb):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [cb], max_epochs=1, max_steps=-1)
    trainer.fit(_DictModel(small_cnn()), torch.utils.data.DataLoader(_SrcTgt(), batch_size=16))
    return trainer


def test_unknown_dict_keys_are_skipped_naming_input_key_and_training_goes_on(tmp_path):
    from lightning_recipe import RecipeWarning

    cb = FirstLayerFilters()
    with pytest.warns(RecipeWarning, match=r"skipped, because found no inputs .*`input_key=` \(or `layer=`"):
        trainer = _fit_dict(tmp_path, cb)
    assert trainer.global_step == 4
    assert [f.status for f in cb.findings] == ["skipped"] and cb.layer_name is None
    assert P + "filters" not in read_events(trainer.logger).all_tags()


@pytest.mark.parametrize("kwargs", [{"input_key": "src"}, {"layer": "net.0"}])
def test_unknown_dict_keys_with_input_key_or_layer_show_the_filters(tmp_path, kwargs):
    cb = FirstLayerFilters(**kwargs)
    trainer = _fit_dict(tmp_path, cb)
    assert cb.layer_name == "net.0" and all(f.status != "skipped" for f in cb.findings)
    assert [s for s, *_ in read_events(trainer.logger).images(P + "filters")] == [0, 4]


class _PixelValues(torch.utils.data.Dataset):
    """Digits as a Hugging Face style dict batch: ``{"pixel_values": x, "labels": y}``."""

    def __init__(self, n: int = 64) -> None:
        x, y = digits_arrays()
        self.x, self.y = torch.as_tensor(x[:n]), torch.as_tensor(y[:n])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class _KwargsModel(LitModel):
    """Called as ``model(**batch)``; computes its own loss and returns a dict with ``logits``."""

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(batch["pixel_values"])
        return {"loss": self.loss_fn(logits, batch["labels"]), "logits": logits}

    def training_step(self, batch, batch_idx):
        return self(**batch)["loss"]


@pytest.mark.parametrize(("net_fn", "layer"), [(small_cnn, "net.0"), (lambda: mlp(64, 10), "net.1")])
def test_forward_kwargs_module_on_a_dict_batch_is_traced_and_shown(tmp_path, net_fn, layer):
    cb = FirstLayerFilters()
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [cb], max_epochs=1, max_steps=-1)
    trainer.fit(_KwargsModel(net_fn()), torch.utils.data.DataLoader(_PixelValues(), batch_size=16))
    assert cb.layer_name == layer
    assert all(f.status != "skipped" for f in cb.findings), [str(f) for f in cb.findings]
    images = read_events(trainer.logger).images(P + "filters")
    assert [s for s, *_ in images] == [0, 4]
    if layer == "net.1":  # the Linear's rows are shown as the 8x8 images it reads
        assert png_shape(images[0][3])[:2] == _grid_size(32, 8)
