"""core.checks.first_layer: tracing through ModelCall, the state kept, each verdict and its clean twin; no Trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_recipe.core.checks import first_layer as fl
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.findings import Skip


class _Kwargs(nn.Module):
    """``forward(**batch)`` on a dict batch, returning a dict with logits (the Hugging Face style)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4 * 6 * 6, 3)
        self.stem = nn.Conv2d(1, 4, 3)  # declared last, runs first

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.stem(batch["pixel_values"]).flatten(1))
        return {"loss": nn.functional.cross_entropy(logits, batch["labels"]), "logits": logits}


def test_trace_first_layer_calls_a_forward_kwargs_module_with_the_whole_batch():
    batch = {"pixel_values": torch.rand(8, 1, 8, 8), "labels": torch.randint(0, 3, (8,))}
    model, call = _Kwargs().train(), ModelCall()
    first = fl.trace_first_layer(model, batch, call)
    assert (first.name, tuple(first.input_shape)) == ("stem", (2, 1, 8, 8))  # two rows are enough
    assert call.convention == "kwargs" and model.training  # modes restored
    assert fl.model_input_shape(model, batch, call, None) == (8, 1, 8, 8)


def test_trace_first_layer_positional_and_no_parameters():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert fl.trace_first_layer(net, (torch.rand(4, 1, 8, 8), torch.zeros(4)), ModelCall()).name == "1"
    with pytest.raises(Skip, match="ran no module with parameters"):
        fl.trace_first_layer(nn.ReLU(), torch.rand(4, 3), ModelCall())


def test_weight_tiles_and_dense_image_shape():
    linear = nn.Linear(64, 5)
    shape = fl.dense_image_shape(linear, linear.weight, (32, 1, 8, 8))
    assert shape == (1, 8, 8) and fl.tiles_of(linear.weight, shape, 3).shape == (3, 1, 8, 8)
    assert fl.dense_image_shape(linear, linear.weight, (32, 64)) is None
    assert fl.tiles_of(linear.weight, None, 3) is None
    emb = nn.Embedding(10, 4)
    assert fl.weight_of(emb) is emb.weight and fl.dense_image_shape(emb, emb.weight, (2, 5)) is None
    assert fl.weight_of(nn.ReLU()) is None


def test_state_observes_init_and_round_trips():
    rng = np.random.default_rng(0)
    init = rng.normal(size=(8, 1, 5, 5))
    state = fl.FilterState(layer_name="conv")
    assert state.observe(init, 0) == (pytest.approx(fl.smoothness(init)), 0.0)
    smooth, change = state.observe(init * 2, 10)
    assert change == pytest.approx(1.0) and [h[0] for h in state.history] == [0, 10]
    assert set(state.scalars("p/", smooth, change)) == {
        "p/change_from_init",
        "p/smoothness",
        "p/smoothness_gain",
    }
    again = fl.FilterState.from_state_dict(state.state_dict())
    assert np.array_equal(again.init_tiles, init) and again.history == state.history
    assert fl.FilterState.from_state_dict({}).last_logged_step == -1


def _judged(init: np.ndarray, now: np.ndarray, epochs: int = 5, after: int | None = 5, grad: bool = True):
    state = fl.FilterState(layer_name="conv")
    state.observe(init, 0)
    smooth, change = state.observe(now, 100)
    weight = torch.zeros(8, 1, *now.shape[-2:], requires_grad=grad)
    return fl.noise_verdict(state, weight, now, smooth, change, epochs, after)


def _ramps(n: int = 8, k: int = 5) -> np.ndarray:
    ramp = np.linspace(-1, 1, k)
    return np.stack([np.add.outer(ramp * (i + 1), ramp) for i in range(n)])[:, None]


def test_noise_verdict_barely_moved_unstructured_and_the_smooth_twin():
    noise = np.random.default_rng(1).normal(size=(8, 1, 5, 5))
    status, message, numbers = _judged(noise, noise * 1.001)
    assert status == "warn" and "barely moved" in message and numbers["mode"] == "grey"
    more_noise = noise + np.random.default_rng(2).normal(size=noise.shape)
    status, message, _ = _judged(noise, more_noise)
    assert status == "warn" and "no spatial structure" in message
    status, message, numbers = _judged(noise, noise + 3 * _ramps())  # learned smooth structure
    assert status == "pass" and numbers["smoothness_gain"] > 0.3, message


def test_noise_verdict_not_judged_early_frozen_or_twice():
    noise = np.random.default_rng(1).normal(size=(8, 1, 5, 5))
    assert _judged(noise, noise, epochs=4) is None
    assert _judged(noise, noise, after=None) is None
    assert _judged(noise, noise, grad=False) is None
    state = fl.FilterState(layer_name="conv", noise_verdict="pass", init_tiles=noise, init_smoothness=0.0)
    assert fl.noise_verdict(state, torch.zeros(8, 1, 5, 5), noise, 0.0, 0.0, 9, 5) is None


def test_identical_verdict_once_and_silent_on_a_random_init():
    state = fl.FilterState()
    status, message, numbers = fl.identical_verdict(state, torch.ones(8, 1, 3, 3), "conv")
    assert status == "warn" and "8 of 8 filters of 'conv'" in message and numbers["identical"] == 8
    assert fl.identical_verdict(state, torch.ones(8, 1, 3, 3), "conv") is None
    assert fl.identical_verdict(fl.FilterState(), nn.Conv2d(1, 8, 3).weight, "conv") is None
    assert math.isnan(fl.FilterState().init_smoothness)
