"""PredictionDynamics' bookkeeping without a Trainer: batches, outputs, trajectories."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_recipe.core.checks.prediction_dynamics import (
    Trajectories,
    call_failed,
    cut_batch,
    describe_call,
    resolve_output,
    spread_batch,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.findings import Skip


def test_spread_batch_takes_samples_spread_over_the_dataset():
    data = DataLoader(TensorDataset(torch.arange(100.0)[:, None], torch.arange(100)), batch_size=8)
    _, y = spread_batch(data, 5)
    assert y.tolist() == [0, 25, 50, 74, 99]
    assert spread_batch(DataLoader(TensorDataset(torch.zeros(0, 1)), batch_size=2), 4) is None


def test_cut_batch_keeps_whole_dict_batches_on_the_cpu():
    batch = {"x": torch.randn(10, 3), "labels": torch.arange(10), "mask": torch.ones(3, 3)}
    kept, inputs, targets = cut_batch(batch, 4, None, None)
    assert kept["x"].shape == (4, 3) and kept["mask"].shape == (3, 3)  # only the batch dimension is cut
    assert inputs is kept["x"] and targets is kept["labels"] and targets.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="target_key"):
        cut_batch(torch.randn(4, 3), 2, None, None)


def test_describe_call_names_the_convention_in_the_messages_words():
    class Kwargs(nn.Module):
        def forward(self, **batch):
            return batch["x"]

    assert describe_call(ModelCall(), nn.Linear(3, 2), (torch.zeros(2, 3),)) == "pl_module(inputs)"
    assert describe_call(ModelCall(), Kwargs(), {"x": torch.zeros(2, 3)}) == "pl_module(**batch)"
    assert describe_call(ModelCall(forward=lambda m, x: m(x)), Kwargs(), {}) == "forward=(pl_module, inputs)"
    message = call_failed("pl_module(inputs)", (4, 30), RuntimeError("shapes\ncannot be multiplied"))
    assert "pl_module(inputs) on the fixed batch's inputs (4, 30) (RuntimeError: shapes cannot" in message


@pytest.mark.parametrize(
    ("output", "match"),
    [(None, r"output None has no row per sample"), (torch.zeros(3, 2), r"output \(3, 2\) has no row")],
)
def test_resolve_output_skips_outputs_without_a_row_per_sample(output, match):
    with pytest.raises(Skip, match=match):
        resolve_output(output, torch.tensor([0, 1]), None, "auto")


def test_resolve_output_infers_the_task_once_and_names_task_when_ambiguous():
    assert resolve_output(torch.zeros(2, 3), torch.tensor([0, 2]), None, "auto") == "multiclass"
    assert resolve_output(torch.zeros(2, 3), torch.tensor([0, 2]), "regression", "auto") == "regression"
    onehot = torch.eye(3)[:2]
    with pytest.raises(Skip, match=r"^skipped, because cannot infer the task.*task='multiclass'"):
        resolve_output(torch.zeros(2, 3), onehot, None, "auto")


def test_trajectories_jitter_and_scalars_by_task():
    trace = Trajectories()
    scalars, _, _ = trace.add(0, "regression", torch.tensor([[1.0], [2.0]]), torch.tensor([1.5, 2.0]))
    assert scalars == {"mean_abs_error": 0.25} and trace.jitter == []
    scalars, preds, _ = trace.add(3, "regression", torch.tensor([[2.0], [2.0]]), torch.tensor([1.5, 2.0]))
    assert scalars["jitter"] == pytest.approx(0.5) and trace.steps == [0, 3]
    assert preds.tolist() == [[2.0], [2.0]]
    clone = Trajectories.from_state(trace.state_dict())
    assert (
        clone.steps == [0, 3]
        and clone.jitter == trace.jitter
        and torch.equal(clone.last_pred, trace.last_pred)
    )
    assert Trajectories.from_state({}).steps == []


def test_trajectories_leave_out_samples_without_a_labelled_position():
    trace = Trajectories()
    scalars, _, _ = trace.add(0, "multiclass", torch.zeros(2, 3), torch.tensor([-100, -100]))
    assert scalars == {} and np.isnan(trace.values[0]).all()
