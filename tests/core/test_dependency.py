"""Unit tests of core.dependency: per-sample and causal gradient dependencies, no Trainer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_recipe.core.dependency import (
    DependencyError,
    causal_verdict,
    chart_dependencies,
    choose_samples,
    independence_verdict,
    per_sample_eval,
    zero_weight_layers,
)
from lightning_recipe.core.state import preserved_state

N, C, L = 8, 4, 6


def verdict(fn, inputs, modules=None, **kw):
    chart = chart_dependencies(fn, inputs, modules=modules, **kw)
    return independence_verdict(chart, zero_layers=zero_weight_layers(modules) if modules is not None else ())


class Conv1dNet(nn.Module):
    """(N, C, L) -> (N, 3); ``bug="view"`` reshapes to (C, N, L) and back as if it were a permute."""

    def __init__(self, bug: str | None = None) -> None:
        super().__init__()
        self.bug = bug
        self.conv = nn.Conv1d(C, 8, 3, padding=1)
        self.head = nn.Linear(8 * L, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bug == "view":  # meant x.permute(1, 0, 2) ... permute back; view silently mixes
            n, c, length = x.shape
            x = x.view(c, n, length).permute(1, 0, 2).contiguous()
        h = torch.relu(self.conv(x))
        return self.head(h.flatten(1))


# ---------------------------------------------------------------------- batch-dimension mixing
@pytest.mark.parametrize(
    "bug, fn",
    [
        ("view", lambda net, x: Conv1dNet("view")(x)),
        ("mean over dim 0", lambda net, x: net(x - x.mean(0))),
        ("softmax over dim 0", lambda net, x: net(x).softmax(0)),
        ("batch std", lambda net, x: net(x / x.std())),
    ],
)
def test_mixing_bugs_fail(bug, fn):
    torch.manual_seed(0)
    net = Conv1dNet()
    status, message, numbers = verdict(lambda x: fn(net, x), torch.randn(N, C, L), modules=net)
    assert status == "fail", bug
    assert "mixes samples across the batch" in message
    assert numbers["mixing_ratio"] > 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(
            nn.Conv1d(C, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * L, 3)
        ),
        lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(C * L, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 3)
        ),
        lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(C * L, 16), nn.Dropout(0.5), nn.Linear(16, 3), nn.LayerNorm(3)
        ),
        lambda: nn.Sequential(
            nn.Conv1d(C, 8, 3), nn.GroupNorm(2, 8), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten()
        ),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(C * L, 10), nn.Softmax(dim=1)),
    ],
    ids=["batchnorm-train", "layernorm", "dropout+final-layernorm", "groupnorm", "softmax-probabilities"],
)
def test_per_sample_models_pass(make):
    torch.manual_seed(0)
    net = make().train()
    with preserved_state(net):
        per_sample_eval(net)
        status, message, _ = verdict(net, torch.randn(N, C, L), modules=net)
    assert status == "pass", message
    assert net.training  # restored


def test_batchnorm_in_train_mode_really_mixes_so_it_must_be_put_in_eval():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(C, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).train()
    assert verdict(net, torch.randn(N, C))[0] == "fail"
    with preserved_state(net):
        assert per_sample_eval(net) == ["1"]
        assert verdict(net, torch.randn(N, C))[0] == "pass"


def test_structured_inputs_tuple_dict_nested_are_all_charted():
    torch.manual_seed(0)
    lin_a, lin_b = nn.Linear(3, 2), nn.Linear(5, 2)

    def fn(batch):
        a, rest = batch
        return {"logits": lin_a(a) + lin_b(rest["b"] - rest["b"].mean(0)), "aux": [lin_a(a)]}

    inputs = (torch.randn(N, 3), {"b": torch.randn(N, 5), "ids": torch.arange(N)})
    before = [inputs[0].clone(), inputs[1]["b"].clone()]
    chart = chart_dependencies(fn, inputs)
    assert [s.name for s in chart.sources] == ["inputs[0]", "inputs[1]['b']"]
    assert chart.outputs == ["outputs['logits']", "outputs['aux'][0]"]
    status, message, _ = independence_verdict(chart)
    assert status == "fail" and "inputs[1]['b']" in message
    assert torch.equal(inputs[0], before[0]) and torch.equal(inputs[1]["b"], before[1])
    assert not inputs[0].requires_grad


def test_inplace_ops_on_the_input_are_fine():
    def fn(x):
        x.mul_(2)
        return x.relu_().sum(1, keepdim=True) + 1.0

    assert verdict(fn, torch.randn(N, 3))[0] == "pass"


# ---------------------------------------------------------------------- integer inputs
class TokenNet(nn.Module):
    def __init__(self, mix: bool = False) -> None:
        super().__init__()
        self.mix = mix
        self.tok = nn.Embedding(20, 8)
        self.pos = nn.Embedding(N, 8)  # positions; T == N on purpose (must not be taken as samples)
        self.out = nn.Linear(8, 20)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        if self.mix:
            h = h - h.mean(0)
        return self.out(h)


@pytest.mark.parametrize("mix, expected", [(False, "pass"), (True, "fail")])
def test_integer_inputs_are_charted_at_the_embedding_output(mix, expected):
    torch.manual_seed(0)
    net = TokenNet(mix)
    ids = torch.randint(0, 20, (N, N))
    chart = chart_dependencies(net, ids, modules=net)
    assert [s.name for s in chart.sources] == ["embedding 'tok'"]
    assert independence_verdict(chart)[0] == expected


class ShiftedTokenNet(TokenNet):
    """Looks up ``ids + 1`` (no embedding call sees the input tensor itself) and positions with T == N."""

    def __init__(self, mix: bool, expand: bool) -> None:
        super().__init__(mix)
        self.tok = nn.Embedding(21, 8)
        self.expand = expand

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1])
        if self.expand:
            positions = positions.unsqueeze(0).expand_as(ids)
        h = self.tok(ids + 1) + self.pos(positions)
        if self.mix:
            h = h - h.mean(0)
        return self.out(h)


@pytest.mark.parametrize("expand", [False, True], ids=["arange", "expanded"])
@pytest.mark.parametrize("mix, expected", [(False, "pass"), (True, "fail")])
def test_position_embeddings_are_not_taken_for_samples_when_no_lookup_matches_the_ids(mix, expected, expand):
    torch.manual_seed(0)
    net = ShiftedTokenNet(mix, expand)
    ids = torch.randint(0, 20, (N, N))
    chart = chart_dependencies(net, ids, modules=net)
    assert [s.name for s in chart.sources] == ["embedding 'tok'"]
    assert independence_verdict(chart)[0] == expected


def test_integer_inputs_without_embedding_say_what_to_pass():
    with pytest.raises(DependencyError, match=r"integer tensors and no nn.Embedding.*`input_key=`"):
        chart_dependencies(lambda ids: ids.float() * 2, torch.arange(N)[:, None])


# ---------------------------------------------------------------------- dead, detached, odd cases
def test_dead_network_is_no_dependency_not_mixing():
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        net[0].bias.fill_(-100.0)  # every ReLU dead
    status, message, _ = verdict(net, torch.randn(N, 3), modules=net)
    assert status == "fail"
    assert message.startswith("no dependency on its own input")


def test_zero_initialised_head_is_skipped_not_dead():
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    nn.init.zeros_(net[2].weight)
    status, message, _ = verdict(net, torch.randn(N, 3), modules=net)
    assert status == "skipped" and "'2.weight' is all zeros" in message


def test_detached_forward_warns():
    net = nn.Linear(3, 2)
    status, message, _ = verdict(lambda x: net(x.detach()), torch.randn(N, 3))
    assert status == "warn" and "not connected to the inputs" in message


def test_non_finite_gradients_are_skipped():
    assert verdict(lambda x: x * float("nan"), torch.randn(N, 3))[0] == "skipped"


def test_no_per_sample_output_names_output_key():
    with pytest.raises(DependencyError, match="`output_key=`"):
        chart_dependencies(lambda x: x.sum(), torch.randn(N, 3))
    chart = chart_dependencies(lambda x: (x.sum(), x * 2), torch.randn(N, 3), output_key=1)
    assert independence_verdict(chart)[0] == "pass"


def test_forward_errors_become_dependency_errors():
    with pytest.raises(DependencyError, match=r"forward pass failed .*RuntimeError"):
        chart_dependencies(nn.Linear(5, 2), torch.randn(N, 3))


def test_choose_samples_spreads_over_the_batch():
    assert choose_samples(100) == [0, 1, 50, 99]
    assert choose_samples(3) == [0, 1, 2]


def test_tolerance_is_relative_to_the_own_gradient():
    fn = lambda x: x + 1e-3 * x.mean(0)  # noqa: E731
    chart = chart_dependencies(fn, torch.randn(N, 3))
    assert independence_verdict(chart)[0] == "fail"
    assert independence_verdict(chart, tolerance=1e-2)[0] == "pass"


# ---------------------------------------------------------------------- causal
class TinyAttention(nn.Module):
    """One self-attention layer over (N, T, D); ``diagonal`` sets which future positions are masked."""

    def __init__(self, mask: bool = True, diagonal: int = 1, d: int = 8) -> None:
        super().__init__()
        self.mask, self.diagonal = mask, diagonal
        self.qkv = nn.Linear(d, 3 * d)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        if self.mask:
            t = x.shape[1]
            future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=self.diagonal)
            scores = scores.masked_fill(future, float("-inf"))
        return self.out(x + scores.softmax(-1) @ v)


@pytest.mark.parametrize(
    "model, strict, expected, leak",
    [
        (TinyAttention(), False, "pass", None),
        (TinyAttention(mask=False), False, "fail", (0, 1)),
        (TinyAttention(diagonal=2), False, "fail", (0, 1)),  # off by one: sees t + 1
        (TinyAttention(), True, "fail", (0, 0)),  # strict: may not see itself
        (None, True, "pass", None),  # strictly causal: inputs shifted right by one
    ],
    ids=["causal", "missing-mask", "off-by-one", "strict-sees-itself", "strict-causal"],
)
def test_causal_dependencies(model, strict, expected, leak):
    torch.manual_seed(0)
    x = torch.randn(4, 10, 8)
    model = model if model is not None else _Shifted()
    chart = chart_dependencies(model, x, modules=model, causal_dim=1, strict=strict)
    assert independence_verdict(chart)[0] == "pass"
    status, message, numbers = causal_verdict(chart, strict=strict)
    assert status == expected, message
    if leak is not None:
        assert numbers["first_leak"] == list(leak)
        assert f"output at position {leak[0]} depends on inputs at position {leak[1]}" in message


class _Shifted(nn.Module):
    """Strictly causal: the output at t sees inputs < t (inputs shifted right by one)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = TinyAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        return self.inner(shifted)


def test_causal_on_token_ids_uses_the_embedding():
    torch.manual_seed(0)

    class LM(nn.Module):
        def __init__(self, mask: bool) -> None:
            super().__init__()
            self.emb = nn.Embedding(30, 8)
            self.att = TinyAttention(mask=mask)

        def forward(self, ids):
            return self.att(self.emb(ids))

    ids = torch.randint(0, 30, (3, 12))
    for mask, expected in [(True, "pass"), (False, "fail")]:
        lm = LM(mask)
        chart = chart_dependencies(lm, ids, modules=lm, causal_dim=1)
        assert causal_verdict(chart)[0] == expected


def test_causal_dim_without_matching_inputs_raises():
    with pytest.raises(DependencyError, match="check `causal_dim=`"):
        chart_dependencies(lambda x: x.unsqueeze(1).expand(-1, 5, -1), torch.randn(4, 3), causal_dim=1)


def test_chart_call_charts_the_inputs_model_call_passes():
    from lightning_recipe.core.dependency import chart_call
    from lightning_recipe.core.model_call import ModelCall

    class HFStyle(nn.Module):  # forward(**batch): called with the whole dict, labels included
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(3, 2)

        def forward(self, **batch):
            return {"logits": self.net(batch["x"] * batch["m"]), "loss": batch["x"].sum()}

    batch = {"x": torch.randn(5, 3), "m": torch.ones(5, 3), "labels": torch.zeros(5, dtype=torch.long)}
    call = ModelCall()
    chart = chart_call(lambda prepare: call(HFStyle(), batch, grad=True, transform=prepare).raw)
    assert call.convention == "kwargs" and chart.batch_size == 5
    assert [s.name for s in chart.sources] == ["inputs['x']", "inputs['m']"]
    assert independence_verdict(chart)[0] == "pass"
    with pytest.raises(DependencyError, match="no tensor with a batch dimension"):
        chart_call(lambda prepare: prepare({"k": 3}))
