"""The "init well" verdicts without a Trainer: scripted targets and tiny modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_recipe.core.checks.bias_init import (
    bias_finding,
    bias_from_stats,
    check_layer_and_index,
    checked_given,
    figure_inputs,
    final_layer,
    given_bias,
    merge_stats,
    read_first_batch,
    resolve_task,
    resume_finding,
    target_stats,
    unsized_batches,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.stats import UNSIZED_MAX_BATCHES, TargetStats
from lightning_recipe.findings import Skip


def _counts(labels, num_classes):
    return TargetStats.from_targets(torch.tensor(labels), "multiclass", num_classes=num_classes)


# ---------------------------------------------------------------------- arguments
def test_given_values_are_checked_against_each_other_and_the_task():
    p, m = checked_given("auto", [0.6, 0.4], None)
    assert p.dtype == torch.float64 and m is None
    with pytest.raises(ValueError, match="not both"):
        checked_given("auto", [0.5, 0.5], 1.0)
    with pytest.raises(ValueError, match="regression takes target_mean="):
        checked_given("regression", [0.5, 0.5], None)
    with pytest.raises(ValueError, match="target_mean= is for task='regression'"):
        checked_given("binary", None, 3.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        checked_given("auto", [1.5], None)
    with pytest.raises(TypeError, match="layer=3"):
        check_layer_and_index("FinalBiasInit", 3, None)
    with pytest.raises(TypeError, match="ignore_index=True"):
        check_layer_and_index("FinalBiasInit", None, True)
    check_layer_and_index("FinalBiasInit", "head", -100)  # clean twin


def test_unsized_batches_uses_an_integer_limit_only():
    assert unsized_batches(7) == 7
    assert unsized_batches(1.0) == unsized_batches(True) == unsized_batches(None) == UNSIZED_MAX_BATCHES


def test_resume_findings():
    assert resume_finding(False, False, None, 0) is None
    message, numbers = resume_finding(True, True, "head", 0)
    assert "of 'head' was set when that run started" in message and numbers == {
        "applied": True,
        "layer": "head",
    }
    message, numbers = resume_finding(False, False, None, 12)
    assert "already at step 12" in message and numbers == {"global_step": 12}


# ---------------------------------------------------------------------- layer and task
class _Kwargs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)

    def forward(self, **batch):
        logits = self.head(batch["x"])
        return {"loss": F.cross_entropy(logits, batch["labels"]), "logits": logits}


def test_final_layer_is_traced_through_model_call():
    batch = {"x": torch.randn(5, 4), "labels": torch.tensor([0, 1, 2, 0, 1])}
    final = final_layer(_Kwargs(), batch, None, ModelCall())
    assert final.name == "head" and final.width == 3 and tuple(final.outputs.shape) == (5, 3)


def test_final_layer_without_a_bias_or_a_runnable_forward_skips():
    with pytest.raises(Skip, match="has no bias, so there is none to set"):
        final_layer(nn.Linear(4, 2, bias=False), (torch.randn(3, 4), torch.zeros(3)), None, ModelCall())
    with pytest.raises(Skip, match="could not run the model's forward"):
        final_layer(nn.Linear(5, 2), (torch.randn(3, 4), torch.zeros(3)), None, ModelCall())
    named = final_layer(nn.Sequential(nn.Linear(5, 2)), None, "0", ModelCall())  # named: no trace needed
    assert named.name == "0" and named.outputs is None


def test_resolve_task():
    assert resolve_task("binary", torch.tensor([0.0, 1.0]), None, 1) == "binary"
    assert resolve_task("auto", None, None, 2, target_mean=torch.tensor([1.0])) == "regression"
    assert resolve_task("auto", torch.tensor([0, 2, 1]), torch.zeros(3, 3), 3) == "multiclass"
    assert resolve_task("auto", None, None, 3, priors=torch.tensor([0.2, 0.3, 0.5])) == "multiclass"
    assert resolve_task("auto", None, None, 3, priors=torch.tensor([0.2, 0.3, 0.9])) == "multilabel"
    assert resolve_task("auto", None, None, 1, priors=torch.tensor([0.2])) == "binary"
    for task in ("auto", "multiclass"):
        with pytest.raises(Skip, match="found no targets in the training batch; pass `target_key=`"):
            resolve_task(task, None, None, 3)
    onehot = torch.eye(3)
    with pytest.raises(Skip, match="one-hot"):
        resolve_task("auto", onehot, torch.zeros(3, 3), 3)


# ---------------------------------------------------------------------- the bias
def test_bias_from_stats_pads_absent_classes_and_rejects_a_narrow_head():
    stats, init, source = bias_from_stats(_counts([0, 0, 1], 2), "multiclass", 4, "head")
    assert source == "3 training targets"
    assert stats.class_counts.numel() == 4 and init.floored == [2, 3]
    with pytest.raises(Skip, match="has 2 outputs but the targets have 3 classes"):
        bias_from_stats(_counts([0, 1, 2], 3), "multiclass", 2, "head")
    reg = TargetStats.from_targets(torch.randn(10, 2), "regression")
    with pytest.raises(Skip, match="each sample has 2 target values"):
        bias_from_stats(reg, "regression", 1, "head")
    with pytest.raises(
        Skip, match="each sample has 2 target values"
    ):  # (N, 1) outputs vs (N, 2): broadcasting
        bias_from_stats(reg, "regression", 1, "head", output_values=1)


def test_a_width_one_head_run_at_every_position_gets_the_mean_of_all_values():
    y = torch.tensor([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])  # (N, T): one output per position
    stats, init, source = bias_from_stats(
        TargetStats.from_targets(y, "regression"), "regression", 1, "head", 3
    )
    assert init.bias.tolist() == pytest.approx([4.0]) and stats.num_outputs == 1
    assert "3 values each, pooled" in source


def test_bias_finding_pass_and_warn():
    stats, init, _ = bias_from_stats(_counts([0, 0, 0, 1], 2), "multiclass", 2, "head")
    status, message, numbers = bias_finding(
        "multiclass", "head", "Linear", 2, "4 training targets", stats, init
    )
    assert status == "pass" and "loss at init should be 0.5623 instead of ln 2=0.6931" in message
    assert numbers["expected_loss"] == pytest.approx(0.5623, abs=1e-4)
    stats, init, _ = bias_from_stats(_counts([0, 0, 1], 3), "multiclass", 3, "head")
    status, message, numbers = bias_finding(
        "multiclass", "head", "Linear", 3, "3 training targets", stats, init
    )
    assert status == "warn" and "class(es) [2] never occur in the training data" in message
    assert numbers["floored"] == [2]


def test_given_bias_priors_and_mean():
    stats, init, source = given_bias("multiclass", 2, "head", priors=torch.tensor([0.75, 0.25]))
    assert source == "the given priors"
    assert torch.softmax(init.bias, 0).tolist() == pytest.approx([0.75, 0.25])
    stats, init, source = given_bias("regression", 3, "head", target_mean=torch.tensor([5.0]))
    assert stats is None and init.bias.tolist() == [5.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="got 2 priors but the final layer 'head' has 3 outputs"):
        given_bias("multiclass", 3, "head", priors=torch.tensor([0.5, 0.5]))


def test_merge_stats_sums_shards_and_counts_identical_ones_once():
    a, b = _counts([0, 0, 1], 2), _counts([1, 1, 1], 2)
    two = [a.to_tensor(2), b.to_tensor(2)]

    def reduce_sum(t):  # two ranks: this one (a) and the other (b), laid out like a.to_tensor
        n = t.numel() // 2
        if n == 1:
            return t * 2
        flat = two[0] + two[1]
        return torch.cat([flat, two[0] ** 2 + two[1] ** 2])

    merged = merge_stats(a, "multiclass", 2, 2, reduce_sum, lambda v: v, lambda d: d)
    assert merged.class_counts.tolist() == [2.0, 4.0]
    same = merge_stats(a, "multiclass", 2, 2, lambda t: t * 2, lambda v: v, lambda d: d)
    assert same.class_counts.tolist() == a.class_counts.tolist()


def test_figure_inputs():
    stats = TargetStats.from_targets(torch.tensor([[1.0], [3.0]]), "regression")
    got = figure_inputs("regression", stats, torch.tensor([2.0]))
    assert got["mean"].tolist() == [2.0] and got["std"].tolist() == pytest.approx([1.0])
    got = figure_inputs("multiclass", None, torch.zeros(3))
    assert got["prior"] is None and got["bias"].shape == (3,)


# ---------------------------------------------------------------------- the data
def test_first_batch_and_target_stats_restore_the_random_state():
    data = DataLoader(TensorDataset(torch.randn(8, 2), torch.arange(8) % 2), batch_size=4, shuffle=True)
    module = nn.Linear(2, 2)
    torch.manual_seed(0)
    loader, batch = read_first_batch(module, data, None, False, lambda b: b)
    stats = target_stats(module, loader, "multiclass", target_key=1)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))
    assert batch[0].shape == (4, 2) and stats.class_counts.tolist() == [4.0, 4.0]
    with pytest.raises(Skip, match="no training dataloader"):
        read_first_batch(module, None, None, False, lambda b: b)
    assert read_first_batch(module, None, "0", True, lambda b: b) == (None, None)
    assert math.isfinite(float(stats.count))
