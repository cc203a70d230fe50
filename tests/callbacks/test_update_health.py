"""UpdateHealth: real Trainer runs on the digits, scripted buggy models and their healthy twins."""

from __future__ import annotations

import json
import os
import pickle
from datetime import timedelta
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.nn import functional as F

from lightning_recipe import RecipeCheckError, RecipeReport, UpdateHealth
from tests.helpers import (
    LitModel,
    assert_same_params,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    mlp,
    png_shape,
    read_events,
    small_cnn,
)

TAG = "recipe/update_health"


def digits_loader(batch_size: int = 64, shuffle: bool = True):
    x, y = digits_arrays()
    return loader(x, y, batch_size=batch_size, shuffle=shuffle)


def fit(
    tmp_path, model, steps: int = 6, health: UpdateHealth | None = None, **trainer_kwargs: Any
) -> UpdateHealth:
    health = health or UpdateHealth(every_n_train_steps=1, patience=3, figure_every_n_train_steps=None)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [health], max_steps=steps, **trainer_kwargs)
    trainer.fit(model, digits_loader())
    return health


def problems(health: UpdateHealth) -> list[str]:
    return [f.numbers["problem"] for f in health.findings if f.is_problem]


def finding(health: UpdateHealth, problem: str):
    found = [f for f in health.findings if f.numbers.get("problem") == problem]
    assert len(found) == 1, [str(f) for f in health.findings]
    return found[0]


# ---------------------------------------------------------------------- scripted models
class UnusedLayer(LitModel):
    """Computes an extra Linear on every step but leaves it out of the loss."""

    def __init__(self) -> None:
        super().__init__(mlp(64, 10))
        self.extra = nn.Linear(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ = self.extra(x.flatten(1))
        return self.net(x)


class FrozenBackbone(LitModel):
    """A deliberately frozen backbone in eval mode (requires_grad=False) with a trained head."""

    def __init__(self, in_optimizer: bool = True) -> None:
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(32, 10)))
        self.backbone = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3)
        )
        self.in_optimizer = in_optimizer
        if in_optimizer:
            self.backbone.requires_grad_(False)
        self.register_buffer("unused_stats", torch.zeros(7))  # an unused frozen buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.backbone(x))

    def on_train_start(self) -> None:
        self.backbone.eval()

    def configure_optimizers(self) -> Any:
        params = self.parameters() if self.in_optimizer else self.net.parameters()
        return torch.optim.Adam(params, lr=self.lr)


class TiedLayers(LitModel):
    """Two layers sharing one weight matrix (weight tying)."""

    def __init__(self) -> None:
        super().__init__(nn.Identity())
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight
        self.stem = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x.flatten(1)))
        h = F.relu(self.a(h))
        return self.head(F.relu(self.b(h)))


class ForgetsZeroGrad(LitModel):
    """Overrides ``optimizer_zero_grad`` with a no-op: every step adds all past gradients."""

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        pass


class ManualModel(LightningModule):
    """Manual optimization: zero_grad (or not), optionally accumulating ``accumulate`` batches."""

    def __init__(self, zero_grad: bool = True, accumulate: int = 1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = mlp(64, 10)
        self.zero = zero_grad
        self.accumulate = accumulate

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt = self.optimizers()
        x, y = batch
        if self.zero and batch_idx % self.accumulate == 0:
            opt.zero_grad()
        self.manual_backward(F.cross_entropy(self.net(x), y) / self.accumulate)
        if (batch_idx + 1) % self.accumulate == 0:
            opt.step()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class TwoOptimizers(LightningModule):
    """GAN-style manual optimization: two optimizers, toggled, each zeroing before its backward."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.a = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.b = nn.Linear(32, 10)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_a, opt_b = self.optimizers()
        x, y = batch
        for opt in (opt_a, opt_b):
            self.toggle_optimizer(opt)
            opt.zero_grad()
            self.manual_backward(F.cross_entropy(self.b(self.a(x)), y))
            opt.step()
            self.untoggle_optimizer(opt)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.a.parameters(), 1e-3), torch.optim.Adam(self.b.parameters(), 1e-3)


class EvalEncoder(LitModel):
    """Calls ``self.net.eval()`` at the start of training: dropout and batch norm stay in eval mode."""

    def __init__(self) -> None:
        net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10)
        )
        super().__init__(net)

    def on_train_start(self) -> None:
        self.net.eval()


class EvalNoDropout(EvalEncoder):
    """Eval mode on a part without dropout or batch norm: behaves the same, not reported."""

    def __init__(self) -> None:
        LitModel.__init__(self, mlp(64, 10))


class Checkpointed(LitModel):
    """A block run under activation checkpointing: its forward (and ReLU hooks) run again in backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        h = checkpoint(lambda t: self.net[2](self.net[1](self.net[0](t))), x, use_reentrant=False)
        return self.net[3](h)


class LoopedRelu(LitModel):
    """One ReLU module applied in a loop (as in an RNN cell): one site, not one per call."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(32, 10))
        self.inp = nn.Linear(64, 32)
        self.cell = nn.Linear(32, 32)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.inp(x.flatten(1)))
        for _ in range(5):
            h = self.relu(self.cell(h)) + h
        return self.net(h)


def zero_init_head() -> LitModel:
    model = LitModel(mlp(64, 10))
    with torch.no_grad():
        model.net[3].weight.zero_()  # no gradient reaches the first layer on the first step
    return model


def dead_relu_model() -> LitModel:
    model = LitModel(mlp(64, 10), optimizer="sgd", lr=0.05)
    with torch.no_grad():
        model.net[1].bias.fill_(-100.0)  # every unit of the ReLU after it is dead
    return model


# ---------------------------------------------------------------------- healthy runs
def test_update_health_logs_per_layer_scalars_and_figure_on_healthy_net(tmp_path):
    health = UpdateHealth(every_n_train_steps=2, patience=2, figure_every_n_train_steps=4)
    trainer = make_trainer(tmp_path, [health], max_steps=9)
    torch.manual_seed(0)
    trainer.fit(LitModel(mlp(64, 10)), digits_loader())
    events = read_events(trainer.logger)

    steps = [s for s, _ in events.scalars(f"{TAG}/log10_update_ratio/net.1")]
    assert steps == [0, 2, 4, 6, 8]
    for layer in ("net.1", "net.3"):
        ratios = [v for _, v in events.scalars(f"{TAG}/log10_update_ratio/{layer}")]
        assert all(-4 < r < 0 for r in ratios), ratios
        assert all(v > 0 for _, v in events.scalars(f"{TAG}/grad_norm/{layer}"))
    dead = [v for _, v in events.scalars(f"{TAG}/dead_fraction/net.2")]
    assert all(0 <= d < 0.5 for d in dead), (
        dead
    )  # about half the activations are zero per sample, few units dead
    for name in (
        "log10_update_ratio_median",
        "log10_update_ratio_min",
        "log10_update_ratio_max",
        "grad_norm",
    ):
        assert events.has_scalar(f"{TAG}/{name}")
    images = events.images(f"{TAG}/layers")
    assert [s for s, *_ in images] == [0, 4, 8]
    height, width, _ = png_shape(images[-1][3])
    assert width > 600 and height > 150

    assert problems(health) == []
    assert health.findings[-1].status == "pass"
    assert health.checks == 5
    assert set(health.last_check["layers"]) == {"net.1", "net.3"}


def test_update_health_healthy_relu_net_has_half_zero_activations_but_no_dead_layer(tmp_path):
    seen: list[float] = []

    class Watch(LitModel):
        def forward(self, x):
            h = self.net[2](self.net[1](self.net[0](x)))
            seen.append(float((h == 0).float().mean()))
            return self.net[3](h)

    health = fit(tmp_path, Watch(mlp(64, 10)), steps=6)
    assert 0.3 < sum(seen) / len(seen) < 0.7  # about half of the activations are zero per sample
    assert problems(health) == []


@pytest.mark.parametrize(
    "model_fn",
    [
        pytest.param(lambda: FrozenBackbone(in_optimizer=True), id="frozen-requires-grad-false"),
        pytest.param(lambda: FrozenBackbone(in_optimizer=False), id="frozen-not-in-optimizer"),
        pytest.param(TiedLayers, id="tied-weights"),
        pytest.param(lambda: ManualModel(zero_grad=True), id="manual-zero-grad"),
        pytest.param(lambda: ManualModel(zero_grad=True, accumulate=2), id="manual-accumulation"),
        pytest.param(TwoOptimizers, id="two-optimizers-toggled"),
        pytest.param(EvalNoDropout, id="eval-without-dropout-or-bn"),
        pytest.param(lambda: LitModel(small_cnn(dropout=0.2)), id="cnn"),
        pytest.param(zero_init_head, id="zero-init-head"),
        pytest.param(lambda: Checkpointed(mlp(64, 10)), id="activation-checkpointing"),
        pytest.param(LoopedRelu, id="relu-in-a-loop"),
    ],
)
def test_update_health_stays_silent_on_healthy_traps(tmp_path, model_fn):
    health = fit(tmp_path, model_fn(), steps=8)
    assert problems(health) == [], [str(f) for f in health.findings]
    assert health.findings[-1].status == "pass"


def test_update_health_sites_with_checkpointing_and_loops(tmp_path):
    assert set(fit(tmp_path, Checkpointed(mlp(64, 10)), steps=2).last_check["dead_fraction"]) == {"net.2"}
    assert set(fit(tmp_path / "loop", LoopedRelu(), steps=2).last_check["dead_fraction"]) == {"relu"}


def test_update_health_without_activation_types_skips_dead_units(tmp_path):
    health = UpdateHealth(every_n_train_steps=1, activation_types=(), figure_every_n_train_steps=1)
    fit(tmp_path, LitModel(mlp(64, 10)), steps=2, health=health)
    assert health.last_check["dead_fraction"] == {}
    assert set(health.last_check["layers"]) == {"net.1", "net.3"}
    events = read_events(os.path.join(tmp_path, "tb", "version_0"))
    assert not any("dead_fraction" in t for t in events.all_tags())
    assert len(events.images(f"{TAG}/layers")) == 2


def test_update_health_stays_silent_with_accumulate_grad_batches(tmp_path):
    health = fit(tmp_path, LitModel(mlp(64, 10)), steps=5, accumulate_grad_batches=3)
    assert problems(health) == []
    assert health.checks == 5  # one check per optimizer step, each after 3 batches


# ---------------------------------------------------------------------- buggy models
def test_update_health_flags_layer_computed_but_unused(tmp_path):
    health = fit(tmp_path, UnusedLayer())
    f = finding(health, "no_gradient")
    assert f.status == "warn" and f.global_step == 3  # after the third check (patience=3)
    assert f.numbers["parameters"] == ["extra.weight", "extra.bias"]
    assert "never received a gradient" in f.message and "requires_grad=False" in f.message
    assert problems(health) == ["no_gradient"]


def test_update_health_flags_forgotten_zero_grad(tmp_path):
    health = fit(tmp_path, ForgetsZeroGrad(mlp(64, 10)))
    f = finding(health, "gradients_not_reset")
    assert f.status == "fail" and f.global_step == 1
    assert "zero_grad" in f.message
    assert problems(health) == ["gradients_not_reset"]


def test_update_health_flags_manual_optimization_without_zero_grad(tmp_path):
    health = fit(tmp_path, ManualModel(zero_grad=False))
    assert problems(health) == ["gradients_not_reset"]


def test_update_health_raises_before_next_step_under_on_fail_raise(tmp_path):
    health = UpdateHealth(every_n_train_steps=1, on_fail="raise", figure_every_n_train_steps=None)
    with pytest.raises(RecipeCheckError, match="gradients are not reset between optimizer steps"):
        fit(tmp_path, ForgetsZeroGrad(mlp(64, 10)), health=health)


def test_update_health_flags_module_left_in_eval(tmp_path):
    health = fit(tmp_path, EvalEncoder())
    f = finding(health, "eval_mode")
    assert f.status == "warn" and f.numbers["step"] == 0
    assert f.numbers["modules"] == ["net"]
    assert f.numbers["affected"] == ["net.2", "net.4"]
    assert "'net' is in eval mode while the model trains" in f.message


def test_update_health_eval_check_can_be_disabled(tmp_path):
    health = UpdateHealth(every_n_train_steps=1, check_eval_mode=False, figure_every_n_train_steps=None)
    assert problems(fit(tmp_path, EvalEncoder(), health=health)) == []


def test_update_health_flags_all_dead_relu_layer(tmp_path):
    trainer_health = UpdateHealth(every_n_train_steps=1, patience=3, figure_every_n_train_steps=2)
    health = fit(tmp_path, dead_relu_model(), health=trainer_health)
    f = finding(health, "dead_layer")
    assert f.status == "fail" and f.numbers["sites"] == ["net.2"]
    assert health.last_check["dead_fraction"] == {"net.2": 1.0}
    # the layer before the dead ReLU (and the weight after it) only ever get zero gradients
    z = finding(health, "zero_gradient")
    assert z.numbers["parameters"] == ["net.1.weight", "net.1.bias", "net.3.weight"]
    events = read_events(os.path.join(tmp_path, "tb", "version_0"))
    assert [v for _, v in events.scalars(f"{TAG}/dead_fraction/net.2")] == [1.0] * 6
    # the no-change marker in the figure: net.1 never changes
    assert events.has_image(f"{TAG}/layers")


def test_update_health_flags_far_too_high_learning_rate(tmp_path):
    health = fit(tmp_path, LitModel(mlp(64, 10), lr=10.0), steps=3)
    f = finding(health, "update_ratio")
    assert f.numbers["step"] == 0 and f.numbers["log10_update_ratio_median"] > 1
    quiet = fit(tmp_path / "quiet", LitModel(mlp(64, 10), lr=3e-2), steps=6)
    assert problems(quiet) == []


# ---------------------------------------------------------------------- cadence, observer effect, sanity
def test_update_health_hooks_only_on_scheduled_steps(tmp_path):
    hooks_per_step: list[int] = []

    class Count(LitModel):
        def training_step(self, batch, batch_idx):
            hooks_per_step.append(len(self.net[2]._forward_hooks) + len(self.net[1]._forward_hooks))
            return super().training_step(batch, batch_idx)

    health = UpdateHealth(every_n_train_steps=4, figure_every_n_train_steps=None)
    fit(tmp_path, Count(mlp(64, 10)), steps=9, health=health)
    assert hooks_per_step == [2, 0, 0, 0, 2, 0, 0, 0, 2]
    assert health.checks == 3
    model = Count(mlp(64, 10))
    assert all(not m._forward_hooks for m in model.modules())


def test_update_health_does_not_change_training(tmp_path):
    def run(callbacks):
        torch.manual_seed(0)
        model = LitModel(mlp(64, 10, dropout=0.5))
        trainer = make_trainer(tmp_path, callbacks, max_steps=6, logger=False)
        torch.manual_seed(1)
        trainer.fit(model, digits_loader())
        return final_params(model)

    without = run([])
    with_health = run([UpdateHealth(every_n_train_steps=1, figure_every_n_train_steps=2)])
    assert_same_params(without, with_health)


def test_update_health_quiet_during_sanity_check(tmp_path):
    seen: list[tuple[bool, int]] = []

    class Spy(UpdateHealth):
        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            seen.append((trainer.sanity_checking, self.checks))
            assert not any(m._forward_hooks for m in pl_module.modules())

    health = Spy(every_n_train_steps=1, figure_every_n_train_steps=None)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [health], max_steps=2, num_sanity_val_steps=2, limit_val_batches=1)
    trainer.fit(LitModel(mlp(64, 10)), digits_loader(), digits_loader(shuffle=False))
    assert seen[0] == (True, 0)
    events = read_events(trainer.logger)
    assert [s for s, _ in events.scalars(f"{TAG}/grad_norm")] == [0, 1]


def test_update_health_reports_to_recipe_report(tmp_path):
    report = RecipeReport(print_summary=False)
    health = UpdateHealth(every_n_train_steps=1, figure_every_n_train_steps=None)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [health, report], max_steps=4)
    trainer.fit(UnusedLayer(), digits_loader())
    with open(report.path, encoding="utf-8") as fh:
        payload = json.load(fh)
    mine = [f for f in payload["findings"] if f["check"] == "UpdateHealth"]
    assert [f["numbers"]["problem"] for f in mine] == ["no_gradient"]
    assert mine[0]["step"] == "activations and updates look odd"


def test_update_health_skips_verdict_when_too_few_checks(tmp_path):
    health = UpdateHealth(every_n_train_steps=10, patience=3, figure_every_n_train_steps=None)
    fit(tmp_path, UnusedLayer(), steps=12, health=health)
    assert health.checks == 2
    assert [f.status for f in health.findings] == ["skipped"]
    assert "fewer than patience=3" in health.findings[0].message


def test_update_health_writes_files_without_tensorboard(tmp_path):
    health = UpdateHealth(every_n_train_steps=1, figure_every_n_train_steps=1)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [health], max_steps=2, logger=CSVLogger(tmp_path))
    trainer.fit(LitModel(mlp(64, 10)), digits_loader())
    root = os.path.join(trainer.logger.log_dir, "recipe")
    with open(os.path.join(root, "scalars.csv"), encoding="utf-8") as fh:
        assert "recipe/update_health/log10_update_ratio/net.1" in fh.read()
    assert sorted(os.listdir(os.path.join(root, "update_health", "layers"))) == [
        "step_00000000.png",
        "step_00000001.png",
    ]


# ---------------------------------------------------------------------- state and resume
def test_update_health_state_dict_and_pickle_round_trip(tmp_path):
    health = fit(tmp_path, UnusedLayer(), steps=4)
    state = health.state_dict()
    assert state["checks"] == 4 and state["reported"]["no_gradient"] == ["extra.weight", "extra.bias"]
    assert state["evidence"]["extra.weight"][:3] == [4, 0, 0]
    other = UpdateHealth(every_n_train_steps=1)
    other.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert other.state_dict() == state
    assert other._next_due == 4
    clone = pickle.loads(pickle.dumps(health))
    assert clone.state_dict() == state
    empty = UpdateHealth()
    empty.load_state_dict({})
    assert empty.checks == 0 and empty._next_due == 0


def test_update_health_resume_keeps_the_evidence(tmp_path):
    def health():
        return UpdateHealth(every_n_train_steps=1, patience=3, figure_every_n_train_steps=None)

    first = health()
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [first], max_steps=2)
    trainer.fit(UnusedLayer(), digits_loader())
    assert problems(first) == [] and first.checks == 2
    ckpt = os.path.join(tmp_path, "two.ckpt")
    trainer.save_checkpoint(ckpt)

    resumed = health()
    trainer = make_trainer(tmp_path, [resumed], max_steps=3)
    trainer.fit(UnusedLayer(), digits_loader(), ckpt_path=ckpt)
    assert resumed.checks == 3
    assert finding(resumed, "no_gradient").global_step == 3  # after the third check overall
    ckpt3 = os.path.join(tmp_path, "three.ckpt")
    trainer.save_checkpoint(ckpt3)

    again = health()  # a problem found before a resume is restated, never hidden behind a "pass"
    trainer = make_trainer(tmp_path, [again], max_steps=4)
    trainer.fit(UnusedLayer(), digits_loader(), ckpt_path=ckpt3)
    restated = finding(again, "no_gradient")
    assert restated.numbers["carried_over"] and "found before the run was resumed" in restated.message
    assert [f.status for f in again.findings] == ["warn"]

    fresh = health()
    trainer = make_trainer(tmp_path / "fresh", [fresh], max_steps=1)
    trainer.fit(UnusedLayer(), digits_loader())
    assert problems(fresh) == []


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"every_n_train_steps": 0},
            ValueError,
            r"UpdateHealth\(every_n_train_steps=0\): pass an integer >= 1",
        ),
        ({"every_n_train_steps": 2.5}, TypeError, r"UpdateHealth\(every_n_train_steps=2.5\)"),
        ({"patience": 0}, ValueError, r"UpdateHealth\(patience=0\)"),
        ({"max_layers": True}, TypeError, r"UpdateHealth\(max_layers=True\)"),
        ({"figure_every_n_train_steps": 0}, ValueError, r"UpdateHealth\(figure_every_n_train_steps=0\)"),
        (
            {"activation_types": ("relu",)},
            TypeError,
            r"activation_types=\('relu',\)\): pass a tuple of torch.nn.Module",
        ),
        ({"activation_types": 3}, TypeError, r"activation_types=3\)"),
        ({"check_eval_mode": "yes"}, TypeError, r"UpdateHealth\(check_eval_mode='yes'\): pass True or False"),
        (
            {"on_fail": "stop"},
            ValueError,
            r"UpdateHealth\(on_fail='stop'\): unknown value; pass one of 'warn' or 'raise'",
        ),
    ],
)
def test_update_health_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        UpdateHealth(**kwargs)


def test_update_health_accepts_a_single_activation_class():
    assert UpdateHealth(activation_types=nn.ReLU).activation_types == (nn.ReLU,)
    assert UpdateHealth(activation_types=[nn.ReLU, nn.Hardtanh]).activation_types == (nn.ReLU, nn.Hardtanh)


# ---------------------------------------------------------------------- DDP
class RankSplitNet(LitModel):
    """A frozen identity layer whose ReLU units are alive only on odd samples (rank 1's shard),
    a trained head, and an unused trainable layer."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(4, 2))
        self.frozen = nn.Linear(4, 4)
        with torch.no_grad():
            self.frozen.weight.copy_(torch.eye(4))
            self.frozen.bias.zero_()
        self.frozen.requires_grad_(False)
        self.relu = nn.ReLU()
        self.extra = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ = self.extra(x)
        return self.net(self.relu(self.frozen(x)))


class RankFindings(UpdateHealth):
    def __init__(self, out_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_dir = out_dir

    def on_fit_end(self, trainer, pl_module):
        super().on_fit_end(trainer, pl_module)
        path = os.path.join(self.out_dir, f"rank{trainer.global_rank}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump([[f.status, f.numbers.get("problem")] for f in self.findings], fh)


@pytest.mark.slow
def test_update_health_ddp_takes_the_same_decisions_on_every_rank(tmp_path):
    from lightning.pytorch.strategies import DDPStrategy

    n = 64
    x = torch.ones(n, 4)
    x[0::2] *= -1.0  # even samples (rank 0's shard) are all negative: the ReLU is dead on rank 0 alone
    y = torch.randint(0, 2, (n,))
    health = RankFindings(str(tmp_path), every_n_train_steps=1, patience=2, figure_every_n_train_steps=2)
    strategy = DDPStrategy(start_method="fork", find_unused_parameters=True, timeout=timedelta(seconds=60))
    trainer = make_trainer(
        tmp_path, [health], max_steps=3, devices=2, strategy=strategy, use_distributed_sampler=True
    )
    log_dir = trainer.logger.log_dir
    trainer.fit(RankSplitNet(), loader(x, y, batch_size=8))
    ranks = []
    for r in (0, 1):
        with open(os.path.join(tmp_path, f"rank{r}.json"), encoding="utf-8") as fh:
            ranks.append(json.load(fh))
    assert ranks[0] == ranks[1]
    assert ranks[0] == [["warn", "no_gradient"]]  # the unused layer; never "dead_layer" (alive on rank 1)
    events = read_events(log_dir)
    assert [v for _, v in events.scalars(f"{TAG}/dead_fraction/relu")] == [0.0, 0.0, 0.0]
    assert len(events.images(f"{TAG}/layers")) == 2


# ---------------------------------------------------------------------- parameters in no optimizer
class HeadOnlyOptimizer(LitModel):
    """The bug: configure_optimizers passes only the last layer; the first one never trains."""

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.net[3].parameters(), lr=self.lr)


class FrozenByRequiresGrad(HeadOnlyOptimizer):
    """Twin: the first layer is left out of the optimizer *and* frozen with requires_grad=False."""

    def __init__(self) -> None:
        super().__init__(mlp(64, 10))
        self.net[1].requires_grad_(False)


class UnusedOutsideOptimizer(LitModel):
    """Twin: a parameter outside the optimizer that takes no part in the loss gets no gradient."""

    def __init__(self) -> None:
        super().__init__(mlp(64, 10))
        self.spare = nn.Parameter(torch.zeros(3))


class HandUpdatedScale(LitModel):
    """Twin: a learned output scale outside the optimizer, updated by hand from its gradient."""

    def __init__(self) -> None:
        super().__init__(mlp(64, 10))
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        with torch.no_grad():
            self.scale -= 0.01 * self.scale.grad
            self.scale.grad.zero_()  # it keeps a gradient: what tells it apart is that it changes


def test_update_health_flags_parameters_in_no_optimizer(tmp_path):
    health = fit(tmp_path, HeadOnlyOptimizer(mlp(64, 10)))
    f = finding(health, "no_optimizer")
    assert f.status == "warn" and f.global_step == 1  # at the first check
    assert f.numbers["parameters"] == ["net.1.weight", "net.1.bias"]
    assert f.message.startswith(
        "`net.1.weight`, `net.1.bias` require grad and get gradients but are in no optimizer: they never train"
    )
    assert problems(health) == ["no_optimizer"]


@pytest.mark.parametrize(
    "model_fn",
    [
        pytest.param(FrozenByRequiresGrad, id="requires-grad-false"),
        pytest.param(UnusedOutsideOptimizer, id="no-gradient"),
        pytest.param(HandUpdatedScale, id="updated-by-hand"),
        pytest.param(lambda: FrozenBackbone(in_optimizer=False), id="frozen-backbone-in-eval"),
    ],
)
def test_update_health_parameters_outside_the_optimizer_on_purpose_are_silent(tmp_path, model_fn):
    health = fit(tmp_path, model_fn())
    assert "no_optimizer" not in problems(health), [str(f) for f in health.findings]


# ---------------------------------------------------------------------- the whole model in eval mode
class WholeModelEval(LitModel):
    """The bug: ``self.eval()`` in a hook or in training_step; dropout and batch norm act as at inference."""

    def __init__(self, where: str = "on_train_start", net: nn.Module | None = None) -> None:
        super().__init__(
            net
            or nn.Sequential(
                nn.Flatten(),
                nn.Linear(64, 32),
                nn.BatchNorm1d(32),
                nn.ReLU(),
                nn.Dropout(0.3),
                nn.Linear(32, 10),
            )
        )
        self.where = where

    def on_train_start(self) -> None:
        if self.where == "on_train_start":
            self.eval()

    def training_step(self, batch, batch_idx):
        if self.where == "training_step":
            self.eval()
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize(("where", "step"), [("on_train_start", 0), ("training_step", 1)])
def test_update_health_flags_the_whole_model_in_eval(tmp_path, where, step):
    health = fit(tmp_path, WholeModelEval(where))
    f = finding(health, "eval_mode")
    assert f.numbers["modules"] == [""] and f.numbers["step"] == step
    assert f.numbers["affected"] == ["net.2", "net.4"]
    assert f.message.startswith("the whole model is in eval mode while it trains")
    assert "remove the self.eval() call" in f.message


def test_update_health_whole_model_in_eval_without_dropout_or_bn_is_silent(tmp_path):
    assert problems(fit(tmp_path, WholeModelEval(net=mlp(64, 10)))) == []
