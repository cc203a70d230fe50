import random

import numpy as np
import pytest
import torch
from torch import nn

from lightning_recipe.core.fingerprint import fingerprint
from lightning_recipe.core.plots import (
    figure_to_array,
    image_grid,
    is_image_like,
    labelled_image_grid_figure,
    new_figure,
)
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tracing import find_layer, trace_layers


class HeadFirst(nn.Module):
    """Declares the head before the stem and reuses a shared layer: execution order matters."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 3)
        self.block = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stem = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return self.head(x)


def test_trace_lists_parametric_layers_in_execution_order():
    model = HeadFirst()
    trace = trace_layers(model, lambda m: m(torch.randn(2, 1, 8, 8)))
    assert trace.names() == ["stem", "block.0", "block.1", "head"]
    assert trace.first.name == "stem" and trace.first.input_shape == (2, 1, 8, 8)
    assert trace.final.name == "head" and tuple(trace.final.output_shape) == (2, 3)
    assert tuple(trace.output.shape) == (2, 3)
    # hooks are gone afterwards
    assert all(not m._forward_hooks for m in model.modules())


def test_trace_records_shared_module_once_and_removes_hooks_on_error():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    trace = trace_layers(model, lambda m: m(torch.randn(1, 4)))
    assert len(trace) == 1

    def boom(m):
        m(torch.randn(1, 4))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        trace_layers(model, boom)
    assert not shared._forward_hooks


def test_find_layer_errors_list_candidates():
    model = HeadFirst()
    assert find_layer(model, "block.0") is model.block[0]
    with pytest.raises(
        ValueError,
        match=r"FinalBiasInit\(layer=...\)='hed': no such module in the model; modules with parameters include \['head', 'block.0'",
    ):
        find_layer(model, "hed", owner="FinalBiasInit(layer=...)")


def test_preserved_state_restores_modes_rng_buffers_grads_and_grad_mode():
    model = HeadFirst().train()
    model.block.eval()
    model.head.weight.grad = torch.ones_like(model.head.weight)
    bn_mean = model.block[1].running_mean.clone()
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    with preserved_state(model, grads=True):
        model.train()
        torch.set_grad_enabled(False)
        model(torch.randn(4, 1, 8, 8))  # BatchNorm in train mode updates running stats
        random.random(), np.random.rand(), torch.rand(3)
        model.head.weight.grad = None
    assert model.training and model.head.training and not model.block.training and not model.block[1].training
    assert torch.is_grad_enabled()
    assert torch.equal(model.block[1].running_mean, bn_mean)
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_preserved_state_restores_on_exception():
    model = nn.Dropout().train()
    with pytest.raises(ValueError), preserved_state(model):
        model.eval()
        raise ValueError
    assert model.training


def test_figures_and_grids():
    fig = new_figure(2, 1, dpi=50)
    fig.add_subplot().plot([0, 1])
    assert figure_to_array(fig).shape == (50, 100, 3)
    grid = image_grid(np.random.rand(10, 3, 4, 4), ncols=5, pad=1, scale=2)
    assert grid.shape == (2 * 8 + 1, 5 * 8 + 4, 3) and grid.dtype == np.uint8
    const = image_grid(np.zeros((1, 1, 4, 4)))  # a constant image must not divide by zero
    assert np.isfinite(const).all()
    fig = labelled_image_grid_figure(
        np.random.rand(4, 1, 8, 8), titles=["0", "1\nb", "2", "3"], title_colors=["red"] * 4
    )
    assert figure_to_array(fig).ndim == 3
    assert is_image_like((8, 1, 8, 8)) and is_image_like((8, 28, 28)) and not is_image_like((8, 30))


def test_fingerprint_is_stable_and_sensitive():
    sd = nn.Linear(3, 2).state_dict()
    assert fingerprint(sd) == fingerprint({k: v.clone() for k, v in sd.items()})
    changed = {k: v.clone() for k, v in sd.items()}
    changed["bias"][0] += 1e-7
    assert fingerprint(sd) != fingerprint(changed)
    assert fingerprint(torch.zeros(2, dtype=torch.bfloat16)) != fingerprint(torch.zeros(2))


class WithPositions(nn.Module):
    """A root module that owns a parameter (positional embedding) besides its layers."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, 4))
        self.embed = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.embed(x) + self.pos)


def test_trace_leaves_out_containers_that_own_parameters():
    trace = trace_layers(WithPositions(), lambda m: m(torch.randn(3, 4)))
    assert trace.names() == ["embed", "head"] and trace.final.name == "head"
    nested = nn.Sequential(WithPositions())  # the container is a submodule, not the root
    assert trace_layers(nested, lambda m: m(torch.randn(3, 4))).final.name == "0.head"
    bare = nn.Linear(4, 2)  # a model that is a single layer is its own first and final layer
    assert trace_layers(bare, lambda m: m(torch.randn(3, 4))).final.module is bare


def test_preserved_state_restores_a_dataloaders_private_generator():
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_recipe.core.state import loader_generators

    data = TensorDataset(torch.arange(20))
    loader = DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(loader_generators(loader)) >= 1
    expected = [
        b[0].tolist()
        for b in DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
    ]
    with preserved_state(None, loaders=[loader]):
        list(loader)  # a check iterating the user's loader advances its generator
    assert [b[0].tolist() for b in loader] == expected
