"""core.health: norms, update ratios, dead units, eval-mode detection, the figure; no Trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_recipe.core.health import (
    ActivationProbe,
    dead_fraction,
    evenly_spaced,
    group_sums,
    health_figure,
    layer_of_parameters,
    log10_or_nan,
    mode_dependent,
    modules_left_in_eval,
    tensor_norms,
    unit_dim,
    update_norms,
)
from lightning_recipe.plots.style import figure_to_array


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("ord", [2.0, math.inf])
def test_tensor_norms_match_torch(dtype, ord):
    ts = [torch.randn(3, 4).to(dtype), torch.randn(7).to(dtype), torch.zeros(2, 2, dtype=dtype)]
    got = tensor_norms(ts, ord)
    want = torch.tensor([float(torch.linalg.vector_norm(t.float(), ord)) for t in ts], dtype=torch.float64)
    assert got.dtype == torch.float64 and got.device.type == "cpu"
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_tensor_norms_sparse_mixed_and_empty():
    sparse = torch.sparse_coo_tensor(
        torch.tensor([[0, 2]]), torch.tensor([3.0, 4.0]), (5,), check_invariants=True
    )
    got = tensor_norms([sparse, torch.ones(4, dtype=torch.float64)])
    assert got.tolist() == pytest.approx([5.0, 2.0])
    assert tensor_norms([]).numel() == 0


def test_update_norms_ratio_and_exact_change():
    before = [torch.ones(4), torch.full((2,), 2.0)]
    after = [torch.ones(4) + torch.tensor([0.0, 0.0, 0.0, 1e-3]), torch.full((2,), 2.0)]
    diff, dmax, weight = update_norms(before, after)
    assert diff.tolist() == pytest.approx([1e-3, 0.0], abs=1e-7)
    assert dmax[0] > 0 and dmax[1] == 0
    assert weight.tolist() == pytest.approx([2.0, math.sqrt(8.0)])
    tiny = [torch.tensor([1e-30])]
    assert update_norms([torch.zeros(1)], tiny)[1][0] > 0  # underflows in the 2-norm squared, not here
    assert all(t.numel() == 0 for t in update_norms([], []))


def test_layer_of_parameters_groups_by_owner_and_counts_tied_weights_once():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            self.b.weight = self.a.weight

    net = Net()
    owner = layer_of_parameters(net)
    assert owner[id(net.scale)] == ("", "scale")
    assert owner[id(net.a.weight)] == ("a", "a.weight")
    assert owner[id(net.b.bias)] == ("b", "b.bias")
    assert len(owner) == 4


def test_group_sums_and_helpers():
    out = group_sums(torch.tensor([1.0, 2.0, 3.0]), [0, 1, 0], 3)
    assert out.tolist() == [4.0, 2.0, 0.0]
    assert group_sums(torch.zeros(0), [], 2).tolist() == [0.0, 0.0]
    assert log10_or_nan(1e-3) == pytest.approx(-3.0)
    assert all(math.isnan(log10_or_nan(v)) for v in (0.0, -1.0, math.inf, math.nan))
    assert evenly_spaced(5, 1) == [0]
    assert evenly_spaced(100, 5) == [0, 25, 50, 74, 99]


@pytest.mark.parametrize(
    ("ndim", "producer", "dim"),
    [
        (2, None, 1),
        (2, nn.Conv1d, 1),
        (3, None, 2),
        (3, nn.Linear, 2),
        (3, nn.Conv1d, 1),
        (3, nn.BatchNorm1d, 1),
        (4, None, 1),
        (4, nn.Conv2d, 1),
        (4, nn.Linear, 3),  # channels-last MLP block
        (4, nn.LayerNorm, 3),
        (5, nn.Conv3d, 1),
    ],
)
def test_unit_dim(ndim, producer, dim):
    assert unit_dim(ndim, producer) == dim


class SharedRelu(nn.Module):
    """One ReLU module called twice with different widths (as in a ResNet bottleneck)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 6)
        self.relu = nn.ReLU(inplace=True)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = self.relu(self.conv(x))
        h = self.relu(self.fc(h.flatten(1)))
        return self.out(h)


def test_activation_probe_sites_units_and_order():
    torch.manual_seed(0)
    net = SharedRelu()
    with torch.no_grad():
        net.conv.bias[:2] = -1e3  # channels 0 and 1 dead
    probe = ActivationProbe(net)
    probe.attach()
    probe.attach()  # idempotent
    net(torch.randn(16, 1, 8, 8))
    probe.detach()
    assert list(probe.alive) == ["relu", "relu:2"]
    assert probe.alive["relu"].tolist() == [False, False, True, True]
    assert probe.alive["relu:2"].shape == (6,)
    assert probe.rows == {"relu": 16, "relu:2": 16}
    assert dead_fraction(probe.alive["relu"]) == 0.5
    assert probe.layer_order == ["conv", "fc", "out"]
    assert not probe.attached and all(not m._forward_hooks for m in net.modules())


def test_activation_probe_merges_calls_at_the_same_width():
    relu = nn.ReLU()
    net = nn.Sequential(nn.Linear(3, 3))
    net.add_module("relu", relu)
    probe = ActivationProbe(net)
    probe.attach()
    relu(torch.tensor([[1.0, -1.0, -1.0], [1.0, -1.0, -1.0]]))
    relu(torch.tensor([[-1.0, 2.0, -1.0]]))
    relu(torch.tensor([[-1.0, -1.0, -1.0, 5.0]]))  # another width: another site
    probe.detach()
    assert probe.alive["relu"].tolist() == [True, True, False]
    assert probe.rows == {"relu": 3, "relu:2": 1}


def test_activation_probe_does_not_change_outputs_or_gradients():
    torch.manual_seed(0)
    net = SharedRelu()
    x = torch.randn(8, 1, 8, 8)
    out = net(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    probe = ActivationProbe(net)
    probe.attach()
    out2 = net(x)
    out2.sum().backward()
    probe.detach()
    assert torch.equal(out, out2)
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, net.parameters()))


def test_activation_probe_healthy_relu_layer_has_few_dead_units():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    probe = ActivationProbe(net)
    probe.attach()
    h = net[1](net[0](torch.randn(32, 20)))
    net[2](h)
    probe.detach()
    assert 0.3 < float((h == 0).float().mean()) < 0.7  # half of the activations are zero per sample
    assert dead_fraction(probe.alive["1"]) < 0.05


def test_activation_probe_ignores_non_tensors_and_custom_types():
    net = nn.Sequential(nn.Linear(3, 3), nn.GELU(), nn.Linear(3, 1))
    probe = ActivationProbe(net)  # GELU is not hooked by default
    probe.attach()
    net(torch.randn(4, 3))
    probe.detach()
    assert probe.alive == {}
    probe = ActivationProbe(net, activation_types=(nn.GELU,))
    probe.attach()
    net(torch.randn(4, 3))
    net[1](torch.randn(3))  # 1-D output: no batch, ignored
    probe.detach()
    assert list(probe.alive) == ["1"]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (nn.Dropout(0.1), True),
        (nn.Dropout(0.0), False),
        (nn.Dropout2d(0.5), True),
        (nn.AlphaDropout(0.2), True),
        (nn.BatchNorm1d(3), True),
        (nn.BatchNorm2d(3, track_running_stats=False), False),
        (nn.InstanceNorm2d(3), False),
        (nn.InstanceNorm2d(3, track_running_stats=True), True),
        (nn.LSTM(3, 3, num_layers=2, dropout=0.1), True),
        (nn.LSTM(3, 3), False),
        (nn.MultiheadAttention(4, 2, dropout=0.1), True),
        (nn.LayerNorm(3), False),
        (nn.Linear(3, 3), False),
        (nn.ReLU(), False),
    ],
)
def test_mode_dependent(module, expected):
    assert mode_dependent(module) is expected


def _trainable(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def test_modules_left_in_eval_reports_trained_parts_with_dropout_or_bn():
    model = nn.Sequential(
        nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)),  # 0: trained, in eval -> reported
        nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)),  # 1: frozen, in eval -> deliberate
        nn.Sequential(nn.Linear(3, 3), nn.ReLU()),  # 2: in eval but nothing mode-dependent
        nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)),  # 3: in train mode
    ).train()
    model[0].eval()
    model[1].eval()
    model[1].requires_grad_(False)
    model[2].eval()
    found = modules_left_in_eval(model, _trainable(model))
    assert [(p.name, p.affected, p.trainable) for p in found] == [("0", ["0.1"], 2)]
    assert modules_left_in_eval(model, set()) == []  # nothing in an optimizer: all deliberate
    # the model itself in eval (a self.eval() in training_step): the whole model is the eval root
    (whole,) = modules_left_in_eval(model.eval(), _trainable(model))
    assert (whole.name, whole.affected, whole.trainable) == ("", ["0.1", "3.1"], 6)  # frozen 1.1 left out
    assert modules_left_in_eval(model.eval(), set()) == []  # nothing trained: deliberate


def test_whole_model_in_eval_leaves_out_what_sits_in_a_frozen_part():
    backbone = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.2)).requires_grad_(False)
    linear_probe = nn.Sequential(backbone, nn.Linear(3, 2)).eval()  # frozen backbone, trained head
    assert modules_left_in_eval(linear_probe, _trainable(linear_probe)) == []
    head_dropout = nn.Sequential(backbone, nn.Dropout(0.5), nn.Linear(3, 2)).eval()
    (found,) = modules_left_in_eval(head_dropout, _trainable(head_dropout))
    assert (found.name, found.affected, found.trainable) == ("", ["1"], 2)  # before the trained head
    plain = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).eval()  # nothing mode-dependent
    assert modules_left_in_eval(plain, _trainable(plain)) == []


def test_modules_left_in_eval_nested_root_and_single_module():
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))).train()
    model[1][1].eval()  # only the batch norm, whose affine parameters are trained
    found = modules_left_in_eval(model, _trainable(model))
    assert [(p.name, p.affected, p.trainable) for p in found] == [("1.1", ["1.1"], 2)]


def test_health_figure_renders_missing_values_and_many_layers():
    layers = [f"block{i}.conv" for i in range(80)]
    ratio = [-3.0 + 0.01 * i for i in range(80)]
    ratio[5] = math.nan  # did not change
    grad = [0.0] * 80
    grad[7] = math.nan  # no gradient
    grad[8] = -math.inf  # zero gradient
    ratio[9] = math.inf  # changed from all-zero weights
    history = [[-2.5, -2.8]] * 80
    fig = health_figure(12, layers, ratio, grad, ["relu", "relu:2"], [0.1, 1.0], history)
    image = figure_to_array(fig)
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 400
    assert len(fig.axes) == 3
    assert len(fig.axes[0].get_yticklabels()) == 64  # evenly spread subset of the 80 layers
    small = figure_to_array(health_figure(0, ["a"], [math.nan], [math.nan]))
    assert small.shape[0] > 100 and np.isfinite(small).all()
