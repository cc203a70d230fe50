"""evaluate_ensemble: a gain on members trained with different seeds, none on identical members."""

import copy

import pytest
import torch
from torch.nn import functional as F

from lightning_recipe import evaluate_ensemble
from tests.helpers import digits_arrays, loader, mlp


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor, n: int = 100, steps: int = 40) -> torch.nn.Module:
    """A small MLP fitted to its seed's own 100 of 600 digits (the seed draws the init and the sample):
    members of the same quality that err differently."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=g)[:n]
    model = mlp(64, 10, hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def digits_members():
    x, y = digits_arrays()
    xt, yt = torch.from_numpy(x[:600]), torch.from_numpy(y[:600])
    return [_trained(seed, xt, yt) for seed in range(4)], loader(x[1000:1400], y[1000:1400], batch_size=100)


def test_members_trained_with_different_seeds_gain_from_averaging(digits_members):
    members, val = digits_members
    result = evaluate_ensemble(members, val, names=[f"seed {i}" for i in range(4)])
    assert result.task == "multiclass" and result.samples == 400
    assert result.has_gain and result.loss_gain / result.members[result.best].loss > 0.05  # 18-34% measured
    assert result.disagreement > 0.02
    assert result.message.startswith(
        f"an ensemble of 4 gains over the best member ({result.members[result.best].name})"
    )
    assert "accuracy" in result.message and "points" in result.message
    table = result.markdown().splitlines()
    assert table[-1].startswith("| **ensemble of 4** |") and sum("(best)" in row for row in table) == 1
    fig = result.figure()
    assert fig._suptitle.get_text() == "Ensemble of 4: gain"
    assert result.to_dict()["has_gain"] is True


def test_identical_members_show_no_gain(digits_members):
    members, val = digits_members
    result = evaluate_ensemble([members[0], copy.deepcopy(members[0]), copy.deepcopy(members[0])], val)
    assert not result.has_gain
    assert result.loss_gain == pytest.approx(0.0, abs=1e-6) and result.disagreement == 0.0
    assert result.message.startswith("no gain from an ensemble of 3")
    assert "the members agree (disagreement 0): they are the same model" in result.message


def test_a_far_better_member_is_named_as_the_reason_for_no_gain(digits_members):
    members, val = digits_members
    weak = copy.deepcopy(members[1])
    with torch.no_grad():
        for p in weak.parameters():
            p.mul_(0.05)  # close to a uniform prediction
    result = evaluate_ensemble([members[0], weak], val)
    assert not result.has_gain and "the best is far better than the rest" in result.message


def test_regression_averages_outputs_and_binary_averages_probabilities():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    members = []
    for offset in (-1.0, 1.0):  # one too high, one too low: the average is right
        m = torch.nn.Linear(3, 1)
        with torch.no_grad():
            m.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
            m.bias.fill_(offset)
        members.append(m)
    result = evaluate_ensemble(members, loader(x, y, batch_size=64))
    assert (result.task, result.loss_name, result.metric_name) == ("regression", "MSE", "MAE")
    assert result.members[0].loss == pytest.approx(1.0) and result.ensemble.loss == pytest.approx(
        0.0, abs=1e-10
    )
    assert result.metric_gain == pytest.approx(1.0) and "better" in result.message

    yb = (y > 0).float()
    heads = [torch.nn.Linear(3, 1) for _ in range(3)]
    result = evaluate_ensemble(heads, loader(x, yb, batch_size=64), task="binary")
    assert (result.task, result.loss_name, result.metric_name) == ("binary", "BCE", "accuracy")


def test_bad_arguments_say_what_to_pass(digits_members):
    members, val = digits_members
    with pytest.raises(
        ValueError, match=r"evaluate_ensemble\(members=<1 model\(s\)>\): pass two or more models"
    ):
        evaluate_ensemble(members[:1], val)
    with pytest.raises(
        ValueError, match=r"evaluate_ensemble\(names=\['a'\]\): pass one name per member \(2\)"
    ):
        evaluate_ensemble(members[:2], val, names=["a"])
    with pytest.raises(ValueError, match=r"evaluate_ensemble\(task='multi'\): unknown task"):
        evaluate_ensemble(members[:2], val, task="multi")
    x, y = digits_arrays()
    # a loader with its own generator shuffles differently for each member (the global RNG is restored)
    shuffled = loader(x[1000:1100], y[1000:1100], batch_size=10, shuffle=True, generator=torch.Generator())
    with pytest.raises(
        ValueError, match="the members saw different targets; pass a dataloader with shuffle=False"
    ):
        evaluate_ensemble(members[:2], shuffled)


def test_members_keep_their_mode(digits_members):
    members, val = digits_members
    members[0].train()
    evaluate_ensemble(members[:2], val)
    assert members[0].training
