"""Shadow training without Lightning: ShadowSteps, the optimizer helpers, replayable data."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.shadow import (
    ReadThrough,
    ShadowSteps,
    ShadowUnsupported,
    check_own_parameters,
    first_optimizer,
    local_batchnorm,
    replay_problem,
    step_loss,
    use_working_lrs,
    working_lrs,
)
from lightning_recipe.findings import Skip


class Positional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])


class Kwargs(Positional):
    """Hugging Face style: forward(**batch) with the loss computed inside."""

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        logits = self.lin(batch["input_ids"].float())
        return {"loss": F.cross_entropy(logits, batch["labels"]), "logits": logits}

    def training_step(self, batch, batch_idx):
        return self(**batch)["loss"]


def _steps(module: nn.Module, lr: float = 0.5) -> ShadowSteps:
    return ShadowSteps(module, torch.optim.SGD(module.parameters(), lr=lr))


def test_shadow_steps_train_score_and_call_a_positional_module():
    torch.manual_seed(0)
    steps = _steps(Positional())
    batch = (torch.randn(8, 4), torch.arange(8) % 3)
    first = steps.step(batch)
    before = steps.loss(batch)
    assert steps.loss(batch) == before and not steps.module.training  # no update, eval mode
    for _ in range(30):
        steps.step(batch)
    assert steps.loss(batch) < first and len(steps.losses) == 31
    out = steps.forward(batch)
    assert out.logits.shape == (8, 3) and not out.logits.requires_grad


def test_shadow_steps_forward_calls_a_module_that_takes_the_whole_dict_batch():
    torch.manual_seed(0)
    steps = _steps(Kwargs())
    batch = {"input_ids": torch.randint(0, 5, (6, 4)), "labels": torch.arange(6) % 3}
    call = ModelCall()
    steps.step(batch)
    out = steps.forward(batch, call)
    assert call.convention == "kwargs" and out.logits.shape == (6, 3) and out.loss is not None
    custom = ModelCall(forward=lambda m, inputs: m.lin(inputs.float() * 0))
    assert torch.equal(steps.forward(batch, custom).logits, steps.module.lin.bias.expand(6, 3))


def test_shadow_steps_need_a_loss():
    class NoLoss(Positional):
        def training_step(self, batch, batch_idx):
            return {"log": 1.0}

    with pytest.raises(ShadowUnsupported, match="training_step returned no loss") as info:
        _steps(NoLoss()).step((torch.randn(2, 4), torch.tensor([0, 1])))
    assert isinstance(info.value, Skip)  # a skipped finding, with the reason


def test_a_loss_without_grad_is_recorded_without_an_update():
    class Detached(Positional):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx).detach()

    steps = _steps(Detached())
    weights = steps.module.lin.weight.detach().clone()
    steps.step((torch.randn(2, 4), torch.tensor([0, 1])))
    assert len(steps.losses) == 1 and torch.equal(weights, steps.module.lin.weight)


def test_first_optimizer_and_the_working_rate_of_a_schedule():
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert first_optimizer({"optimizer": opt}) is opt and first_optimizer([[], (opt,)]) is opt
    assert first_optimizer({"lr_scheduler": None}) is None
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.0)
    assert opt.param_groups[0]["lr"] == 0.0

    class Config:
        scheduler = warmup

    assert working_lrs(opt, [Config()]) == [0.1]
    use_working_lrs(opt, [Config()])
    assert opt.param_groups[0]["lr"] == 0.1
    cyclic = torch.optim.SGD(net.parameters(), lr=0.1)

    class Cyclic:
        scheduler = torch.optim.lr_scheduler.CyclicLR(cyclic, base_lr=0.01, max_lr=0.3, cycle_momentum=False)

    assert working_lrs(cyclic, [Cyclic()]) == [0.3]


def test_check_own_parameters():
    net = nn.Linear(2, 2)
    check_own_parameters(torch.optim.SGD(net.parameters(), lr=0.1), net)
    with pytest.raises(ShadowUnsupported, match="not the module's own"):
        check_own_parameters(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), net)


def test_step_loss_and_replay_problem():
    loss = torch.tensor(1.0)
    assert step_loss(loss) is loss and step_loss({"loss": loss}) is loss and step_loss(None) is None
    assert replay_problem([1, 2]) is None
    assert replay_problem(None) == "no dataloader"
    assert "one-shot stream" in replay_problem(iter([1, 2]))


def test_local_batchnorm_runs_a_sync_batchnorm_alone():
    net = nn.Sequential(nn.Linear(3, 4), nn.SyncBatchNorm(4))
    local_batchnorm(net)
    assert not isinstance(net[1], nn.SyncBatchNorm)
    assert net(torch.randn(5, 3)).shape == (5, 4)  # no process group needed


def test_read_through_reads_the_real_object_and_keeps_writes():
    class Real:
        value, other = 1, 2

    real = Real()
    view = ReadThrough(real, value=10)
    view.other = 20
    assert (view.value, view.other, real.value, real.other) == (10, 20, 1, 2)
    assert isinstance(view, Real)
