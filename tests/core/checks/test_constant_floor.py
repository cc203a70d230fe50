"""constant_floor: the lowest loss a constant prediction reaches, and when a zeroed batch forces one."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lightning_recipe.core.checks.constant_floor import (
    floor_kind,
    floor_of,
    floor_stats,
    input_free,
    loss_matches,
    our_loss,
)


def _best_constant(kind, targets: torch.Tensor, loss, width: int) -> float:
    """The loss of the best constant output, found by gradient descent on the constant itself."""
    c = torch.zeros(width, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([c], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss(c.expand(targets.shape[0], width).reshape(-1, width).squeeze(-1) if width == 1
                     else c.expand(targets.shape[0], width), targets)  # fmt: skip
        value.backward()
        return value

    opt.step(closure)
    return float(closure().detach())


@pytest.mark.parametrize(
    "case",
    ["multiclass", "binary", "multilabel", "regression", "regression_2d"],
)
def test_the_floor_is_the_best_any_constant_prediction_does(case):
    g = torch.Generator().manual_seed(0)
    n = 300
    if case == "multiclass":
        y = torch.multinomial(torch.tensor([0.6, 0.25, 0.1, 0.05]), n, replacement=True, generator=g)
        logits, loss, width = torch.zeros(n, 4), F.cross_entropy, 4
    elif case == "binary":
        y = (torch.rand(n, generator=g) < 0.2).float()
        logits, loss, width = torch.zeros(n), F.binary_cross_entropy_with_logits, 1
    elif case == "multilabel":
        y = (torch.rand(n, 3, generator=g) < torch.tensor([0.1, 0.5, 0.8])).float()
        logits, loss, width = torch.zeros(n, 3), F.binary_cross_entropy_with_logits, 3
    elif case == "regression":
        y = 5.0 + 3.0 * torch.randn(n, generator=g)
        logits, loss, width = torch.zeros(n), F.mse_loss, 1
    else:
        y = torch.randn(n, 2, generator=g) * torch.tensor([1.0, 10.0])
        logits, loss, width = torch.zeros(n, 2), F.mse_loss, 2
    kind = floor_kind(logits, y)
    assert kind is not None and kind[1] == width
    # the sums of two shards add up to those of the whole
    half = n // 2
    stats = [a + b for a, b in zip(floor_stats(kind, y[:half]), floor_stats(kind, y[half:]))]
    floor = floor_of(kind, stats)
    target = y if case == "multiclass" else y.double()
    assert floor == pytest.approx(_best_constant(kind, target, loss, width), rel=1e-4, abs=1e-6)
    # and our loss is the user's: the floor applies to a loss computed with F
    z = torch.randn(logits.shape, generator=g)
    assert loss_matches(float(loss(z, y)), our_loss(kind, z, y))


def test_floor_kind_only_for_layouts_whose_floor_is_known():
    n = 8
    assert floor_kind(torch.zeros(n, 5), torch.arange(n) % 5) == ("multiclass", 5)
    assert floor_kind(torch.zeros(n, 1), (torch.arange(n) % 2).float()) == ("binary", 1)
    assert floor_kind(torch.zeros(n, 3), torch.randn(n, 3)) == ("regression", 3)
    ignored = torch.full((n,), -100)
    assert floor_kind(torch.zeros(n, 5), ignored) is None  # a sentinel label: a token task
    assert floor_kind(torch.zeros(n, 5, 4, 4), torch.zeros(n, 4, 4, dtype=torch.long)) is None  # dense
    assert floor_kind(torch.zeros(n, 5), torch.full((n,), 7)) is None  # out of range
    assert floor_kind(torch.zeros(n, 2), torch.randn(n, 3)) is None  # shapes that do not pair
    assert floor_kind(torch.zeros(1, 5), torch.zeros(1, dtype=torch.long)) is None  # one sample


def test_input_free_needs_every_non_target_tensor_alike_across_samples():
    y = torch.arange(4)
    assert input_free((torch.zeros(4, 3, 2, 2), y), y)
    assert input_free({"pixel_values": torch.zeros(4, 3), "scale": torch.tensor(2.0), "labels": y}, y)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]])
    assert not input_free(
        {"input_ids": torch.zeros(4, 3, dtype=torch.long), "attention_mask": mask, "labels": y}, y
    )
    assert not input_free((torch.zeros(4, 3), torch.arange(4.0).reshape(4, 1), y), y)  # a side input kept


def test_loss_matches_tells_other_losses_apart():
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(32, 10, generator=g), torch.randint(0, 10, (32,), generator=g)
    kind = floor_kind(z, y)
    ours = our_loss(kind, z, y)
    assert loss_matches(float(F.cross_entropy(z, y)), ours)
    assert not loss_matches(float(F.cross_entropy(z, y, reduction="sum")), ours)
    assert not loss_matches(float(F.cross_entropy(z / 2.0, y)), ours)  # a temperature in the step
    weights = torch.linspace(0.5, 2.0, 10)
    assert not loss_matches(float(F.cross_entropy(z, y, weight=weights)), ours)
    assert not loss_matches(float("nan"), ours)
