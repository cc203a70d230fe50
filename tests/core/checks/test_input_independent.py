"""The input-independent baseline without a Trainer: zeroing, the reduced rounds, the verdicts, two copies."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_recipe.core.checks.input_independent import (
    BaselineConfig,
    BaselineRounds,
    CopyPair,
    RoundPlan,
    clear_pass,
    drop,
    infer_integer_fill,
    run_rounds,
    verdict,
    zero_inputs,
)
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.shadow import ShadowSteps
from lightning_recipe.findings import Skip

CONFIG = BaselineConfig()


# ---------------------------------------------------------------------- zeroing
def test_zero_inputs_zeroes_inputs_and_leaves_targets():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    zx, zy = zero_inputs((x, y), CONFIG, "Owner", check=True)
    assert not zx.any() and zy is y and x.any()
    batch = {"image": x, "label": y}
    out = zero_inputs(batch, BaselineConfig(fill=0.5), "Owner", check=True)
    assert torch.equal(out["image"], torch.full_like(x, 0.5)) and out["label"] is y


def test_zero_inputs_integer_inputs_need_integer_fill():
    ids, y = torch.randint(1, 9, (4, 6)), torch.tensor([0, 1, 0, 1])
    with pytest.raises(Skip, match=r"integer tensors \(token ids\?\) and integer_fill=None"):
        zero_inputs((ids, y), CONFIG, "Owner", check=True)
    zeroed, _ = zero_inputs((ids, y), BaselineConfig(integer_fill=0), "Owner", check=True)
    assert not zeroed.any()


def test_zero_inputs_skips_without_targets_and_names_the_owner_for_a_bad_key():
    with pytest.raises(Skip, match="found no targets in the batch"):
        zero_inputs({"x": torch.randn(2, 3)}, CONFIG, "Owner")
    with pytest.raises(ArgumentError, match=r"^Owner: .*input_key='pixels'"):
        zero_inputs(
            {"x": torch.randn(2, 3), "y": torch.zeros(2)}, BaselineConfig(input_key="pixels"), "Owner"
        )


# ---------------------------------------------------------------------- rounds and verdicts
def _rounds(*rounds: tuple[float, float, float]) -> BaselineRounds:
    """Rounds of (real val loss, zeroed val loss, real drift); zeroed drift 1, training losses = validation."""
    out = BaselineRounds()
    for k, (real, zero, drift) in enumerate(rounds):
        out.add([real * 10, 10, zero * 10, 10, real, zero, 1.0, drift, 1.0, 1.0, 1.0], steps_done=100 * k)
    return out


def test_rounds_reduce_sums_to_means():
    rounds = _rounds((2.3, 2.3, 0.0), (0.5, 2.0, 0.9))
    assert rounds.real_val == pytest.approx([2.3, 0.5]) and rounds.zero_val == pytest.approx([2.3, 2.0])
    assert rounds.eval_steps == [0, 100]
    assert rounds.gap == pytest.approx(0.75) and rounds.fit_gap == pytest.approx(0.75)
    numbers = rounds.numbers(100)
    assert numbers["steps"] == 100 and numbers["real_val_loss_at"] == pytest.approx({0: 2.3, 100: 0.5})
    empty = BaselineRounds()
    empty.add([0.0] * 11, 0)
    assert math.isnan(empty.real_val[0]) and math.isnan(empty.gap) and BaselineRounds().numbers(0) == {}


def test_verdict_passes_when_real_inputs_help():
    found = verdict(CONFIG, _rounds((2.3, 2.3, 1.0), (0.2, 2.3, 0.9)), last=False)
    assert found == (
        "pass",
        "the model uses its input: validation loss 0.2 with real inputs vs 2.3 with zeroed inputs after 100 steps "
        "(91% lower)",
    )


def test_verdict_fails_identical_copies_and_a_real_copy_that_learned_nothing():
    status, message = verdict(CONFIG, _rounds((2.3, 2.3, 1.0), (2.1, 2.1, 0.9)), last=False)
    assert (
        status == "fail"
        and "does not depend on its input" in message
        and "identical at every point" in message
    )
    status, message = verdict(CONFIG, _rounds((2.3, 2.31, 1.0), (2.30, 2.31, 0.1)), last=False)
    assert status == "fail" and message.startswith("the model extracts no information from its input")
    assert "(gap 0.4% < margin 5%)" in message


def test_verdict_waits_then_says_inconclusive():
    still_learning = _rounds((2.3, 2.31, 1.0), (2.0, 2.05, 0.9))
    assert verdict(CONFIG, still_learning, last=False) is None
    status, message = verdict(CONFIG, still_learning, last=True)
    assert status == "skipped" and message.startswith("inconclusive:")
    assert "its gradients still point one way (drift 0.90)" in message and "(now 500)" in message
    catching_up = _rounds((2.3, 2.3, 1.0), (1.0, 1.5, 0.1))  # 33% gap, but the zeroed copy fell 0.8
    assert verdict(CONFIG, catching_up, last=False) is None
    status, message = verdict(CONFIG, catching_up, last=True)
    assert status == "skipped" and "the zeroed copy is still improving (0.8 in the last 100 steps)" in message
    # the zeroed copy fell 0.8 in its first 25 steps (the prior) and 0.02 in the 75 after: no
    # longer catching up, so the round passes when its pace is read from its first chunk on
    assert verdict(CONFIG, catching_up, last=False, since=(25, 1.52))[0] == "pass"
    # and still waits where it was falling as fast after the first chunk
    assert verdict(CONFIG, catching_up, last=False, since=(25, 2.1)) is None


@pytest.mark.parametrize(
    "real, zero, expected",
    [
        (0.5, math.nan, "has a non-finite validation loss (nan)"),
        (math.inf, 2.3, "the copy trained on real inputs diverged (validation loss inf) within 100 steps"),
        (0.0, 0.0, "reached a validation loss of 0: the targets are predictable without the input"),
    ],
)
def test_verdict_skips_what_cannot_be_compared(real, zero, expected):
    status, message = verdict(CONFIG, _rounds((2.3, 2.3, 1.0), (real, zero, 0.5)), last=False)
    assert status == "skipped" and expected in message


def test_drop():
    assert drop([2.0, 1.0]) == 1.0 and drop([1.0]) == 0.0 and drop([1.0, math.nan]) == 0.0


# ---------------------------------------------------------------------- two copies, one rank, no Trainer
def _copies(cls: type[nn.Module]) -> Callable[[], ShadowSteps]:
    """``make_copy`` for ``CopyPair``: fresh ``cls()`` copies of one seeded instance, each with its Adam."""
    torch.manual_seed(0)
    net = cls()

    def make_copy() -> ShadowSteps:
        copy = cls()
        copy.load_state_dict(net.state_dict())
        return ShadowSteps(copy, torch.optim.Adam(copy.parameters(), lr=0.05))

    return make_copy


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.lin(batch[0]), batch[1])


def _loader(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x[:, :3].argmax(1)  # the label is in the input
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]


def _pair(config: BaselineConfig, val: list) -> CopyPair:
    make_copy = _copies(Net)
    return CopyPair(
        config,
        make_copy,
        _loader(256, 0),
        val,
        lambda b: b,
        lambda b, check: zero_inputs(b, config, "T", check),
    )


def test_copy_pair_trains_both_copies_and_the_real_one_wins():
    config = BaselineConfig(steps=40)
    pair = _pair(config, _loader(128, 1))
    rounds = BaselineRounds()
    for k in (0, 1):
        assert pair.advance(k) is None
        assert len(pair.local) == 11
        rounds.add(pair.local, pair.steps_done)
    pair.close()
    assert pair.steps_done == 40 and len(pair.real_losses) == len(pair.zero_losses) == 40
    assert pair.real is None and pair.zero is None
    assert verdict(config, rounds, last=True)[0] == "pass"
    assert rounds.real_val[-1] < 0.5 * rounds.zero_val[-1]


class DropNet(nn.Module):
    """A forward (the floor reads the outputs) and dropout (the zeroed copy must replay the masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.drop = nn.Linear(4, 3), nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.drop(x))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])


def _drop_pair(config: BaselineConfig) -> CopyPair:
    make_copy = _copies(DropNet)
    zeroed = lambda b, check: zero_inputs(b, config, "T", check)  # noqa: E731
    return CopyPair(config, make_copy, _loader(256, 0), _loader(128, 1), lambda b: b, zeroed)


@pytest.mark.parametrize("cap", [None, 0], ids=["kept", "over_the_memory_cap"])
def test_copy_pair_lazy_zeroed_copy_catches_up_to_the_same_steps(monkeypatch, cap):
    """Lazily, the zeroed copy takes later the steps it would have taken along: the same batches, the
    same dropout masks, the same losses, scores and gradient drift (also when the batches kept for it
    pass ``PENDING_BYTES`` and it steps at once)."""
    from lightning_recipe.core.checks import input_independent

    if cap is not None:
        monkeypatch.setattr(input_independent, "PENDING_BYTES", cap)
    config = BaselineConfig(steps=40)
    eager, lazy = _drop_pair(config), _drop_pair(config)
    torch.manual_seed(1)
    assert eager.advance(0) is None and eager.advance(1) is None
    after_eager = torch.get_rng_state()
    torch.manual_seed(1)
    assert lazy.advance(0) is None
    y = torch.cat([b[1] for b in _loader(128, 1)])
    p = torch.bincount(y, minlength=3).double() / len(y)
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    assert lazy.floor_kind == ("multiclass", 3)
    assert lazy.floor_local == pytest.approx(
        [entropy * 128, 128]
    )  # this rank's floor, weighted by its samples
    assert lazy.advance(1, 15, lazy=True) is None and lazy.advance(1, 25, new_round=False, lazy=True) is None
    assert lazy.zero is not None and len(lazy.zero.losses) == (0 if cap is None else 40)
    assert lazy.local[:2] == eager.local[:2] and lazy.local[2:4] == [0.0, 0.0]
    assert lazy.catch_up() is None
    assert lazy.zero.losses == eager.zero.losses and len(lazy.zero.losses) == 40
    assert lazy.local == pytest.approx(eager.local, rel=1e-9)
    assert torch.get_rng_state().equal(after_eager)  # the generators where the eager steps left them


class LayerDropNet(DropNet):
    """A residual layer skipped on random steps while training (LayerDrop, as in wav2vec 2.0): some
    steps leave its parameters without a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.extra = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or torch.rand(()) > 0.5:
            x = x + self.extra(x)
        return self.lin(x)


def test_copy_pair_trains_a_model_whose_layers_drop_out_on_some_steps():
    make_copy = _copies(LayerDropNet)
    config = BaselineConfig(steps=40)
    zeroed = lambda b, check: zero_inputs(b, config, "T", check)  # noqa: E731
    pair = CopyPair(config, make_copy, _loader(256, 0), _loader(128, 1), lambda b: b, zeroed)
    assert pair.advance(0) is None and pair.advance(1) is None  # was: "size of tensor a must match b"
    rounds = BaselineRounds()
    rounds.add(pair.local, pair.steps_done)
    assert 0.0 < rounds.real_drift[-1] <= 1.0


def test_copy_pair_reports_why_it_cannot_run():
    assert (
        _pair(CONFIG, []).advance(0)
        == "the validation dataloader yielded no batch; pass validation data to `Trainer.fit`"
    )

    class Broken(Net):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("boom")

    pair = CopyPair(
        CONFIG,
        lambda: ShadowSteps(Broken(), torch.optim.SGD(Net().parameters(), lr=0.1)),
        _loader(64, 0),
        _loader(64, 1),
        lambda b: b,
        lambda b, check: b,
    )
    assert pair.advance(0) == "a copy of the module failed (RuntimeError: boom)"


# ---------------------------------------------------------------------- token inputs, dict batches
def _token_batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[5, 6, 7, 2, 2], [8, 9, 2, 2, 2]])
    mask = (ids != 2).long()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": ids}


def test_infer_integer_fill_prefers_the_padding_id_the_batch_shows():
    assert infer_integer_fill(_token_batch(), nn.Embedding(10, 4, padding_idx=1)) == (
        2,
        "the padding id: input_ids where attention_mask == 0",
    )


def test_infer_integer_fill_falls_back_to_the_config_the_embedding_then_zero():
    batch = {"input_ids": torch.tensor([[5, 6], [7, 8]]), "labels": torch.tensor([0, 1])}

    class WithConfig(nn.Module):
        def __init__(self, pad: int | None, vocab: int = 10) -> None:
            super().__init__()
            self.config = type("Config", (), {"pad_token_id": pad, "vocab_size": vocab})()
            self.embed = nn.Embedding(vocab, 4, padding_idx=3)

    assert infer_integer_fill(batch, WithConfig(4)) == (4, "pad_token_id of the module's config")
    assert infer_integer_fill(batch, WithConfig(50256)) == (3, "padding_idx of the embedding 'embed'")
    fill, source = infer_integer_fill(batch, nn.Linear(2, 2))
    assert fill == 0 and source.startswith("a fixed id") and "`integer_fill=`" in source


def test_zero_inputs_replaces_the_content_and_keeps_the_structure_of_a_dict_batch():
    batch = _token_batch()  # labels are the very tensor of input_ids
    batch["pixel_values"] = torch.randn(2, 3, 4, 4)
    out = zero_inputs(batch, BaselineConfig(integer_fill=2), "Owner", check=True)
    assert torch.equal(out["input_ids"], torch.full_like(batch["input_ids"], 2))
    assert not out["pixel_values"].any()
    for key in ("attention_mask", "token_type_ids", "labels"):
        assert out[key] is batch[key]
    assert batch["input_ids"][0, 0] == 5  # nothing changed in place


def test_zero_inputs_keeps_masks_inside_inputs_a_callable_returns():
    batch = _token_batch()
    pick = lambda b: {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}  # noqa: E731
    config = BaselineConfig(integer_fill=0, input_key=pick, target_key="labels")
    out = zero_inputs({**batch, "labels": batch["labels"].clone()}, config, "Owner", check=True)
    assert not out["input_ids"].any() and out["attention_mask"] is batch["attention_mask"]


# ---------------------------------------------------------------------- within a one-time budget (issue 14)
def _fine(*pairs: tuple[float, float], every: int = 25) -> BaselineRounds:
    rounds = BaselineRounds()
    for k, (real, zero) in enumerate(pairs):
        rounds.add([real * 64, 64, zero * 64, 64, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0], steps_done=k * every)
    return rounds


def test_clear_pass_between_rounds_and_its_twin_with_a_zeroed_copy_still_learning():
    config = BaselineConfig()  # rounds of 100 steps, scored every 25 when budgeted
    status, message = clear_pass(config, _fine((2.30, 2.30), (1.20, 2.25)), chunk=25)
    assert status == "pass" and message.endswith("after 25 steps (47% lower)")
    # the zeroed copy fell 0.2 in 25 steps: 0.8 a round, three rounds could close the 1.0 gap
    assert clear_pass(config, _fine((3.0, 3.0), (1.2, 2.2)), chunk=25) is None
    assert clear_pass(config, _fine((2.30, 2.30), (2.25, 2.30)), chunk=25) is None  # 2% < margin 5%
    assert clear_pass(config, _fine((2.30, 2.30)), chunk=25) is None  # nothing trained yet
    # a peek 5 steps after a score: the zeroed copy's pace is read over the 30 steps since init, not
    # over 5 noisy ones (there it rose a little: pace 0, which alone would let the pass through)
    peek = _fine((2.50, 2.50), (2.15, 2.31), (2.10, 2.32), every=1)
    peek.eval_steps[:] = [0, 25, 30]
    assert clear_pass(config, peek, chunk=25) is None  # fell 0.18 in 30 steps: 0.6 a round
    flat = _fine((2.30, 2.30), (2.19, 2.30), (2.10, 2.30), every=1)
    flat.eval_steps[:] = [0, 25, 30]
    assert clear_pass(config, flat, chunk=25)[0] == "pass"


def test_round_plan_peeks_where_the_gap_would_reach_the_margin_before_the_next_score():
    from lightning_recipe.core.budget import OneTimeBudget

    config = BaselineConfig()  # rounds of 100 steps, scored every 25 when budgeted
    plan = RoundPlan(5, OneTimeBudget(share=0.05, planned_steps=1000, members=["InputIndependentBaseline"]))
    near = _fine((2.30, 2.30), (2.19, 2.30))  # 4.8% lower after 25 steps, 0% at init: 5% in ~2 more
    assert plan.next_chunk(config, near, done=25, peeked=False) == (5, True)  # a fifth of a chunk at least
    assert plan.next_chunk(config, near, done=30, peeked=True) == (20, False)  # never two peeks in a row
    far = _fine((2.30, 2.30), (2.28, 2.30))  # 0.9%: the margin is ~100 steps away, the grid point nearer
    assert plan.next_chunk(config, far, done=25, peeked=False) == (25, False)
    over = _fine((2.30, 2.30), (1.20, 2.25))  # past the margin already: nothing to peek for
    assert plan.next_chunk(config, over, done=25, peeked=False) == (25, False)
    falling = _fine((2.30, 2.30), (2.19, 2.30), (2.21, 2.30), every=5)  # the gap shrank: no peek
    assert plan.next_chunk(config, falling, done=25, peeked=False) == (25, False)
    assert RoundPlan(5).next_chunk(config, near, done=0, peeked=False) == (100, False)  # no budget: a round


class _ScriptedPair:
    """A :class:`CopyPair` stand-in: the real copy's validation loss falls linearly, the zeroed copy's stays."""

    def __init__(self, fall_per_step: float) -> None:
        self.fall, self.steps_done, self.train_s, self.local, self.scored = fall_per_step, 0, 0.0, [], []
        self.floor_kind = None  # the zeroed copy trains along: no floor

    def advance(self, k: int, steps: int | None = None, new_round: bool = True, lazy: bool = False) -> None:
        self.steps_done = 0 if k == 0 else self.steps_done + (steps or 100)
        real = 2.30 * (1.0 - self.fall * self.steps_done)
        self.local = [real * 64, 64, 2.30 * 64, 64, real, 2.30, 1.0, 0.5, 0.1, 1.0, 1.0]
        self.scored.append(self.steps_done)


def test_run_rounds_takes_the_pass_at_the_peek_not_the_next_quarter():
    from lightning_recipe.core.budget import OneTimeBudget

    config, identity = BaselineConfig(), lambda v: v
    pair = _ScriptedPair(fall_per_step=0.0019)  # 4.75% lower after 25 steps, 5.7% after 30
    plan = RoundPlan(5, OneTimeBudget(share=0.05, planned_steps=1000, members=["InputIndependentBaseline"]))
    _, (status, message) = run_rounds(pair, config, plan, identity, lambda ok: ok)
    assert status == "pass" and pair.scored == [0, 25, 30] and message.endswith("after 30 steps (6% lower)")
    # the twin without a budget scores whole rounds only, as before
    whole = _ScriptedPair(fall_per_step=0.0019)
    _, (status, _) = run_rounds(whole, config, RoundPlan(5), identity, lambda ok: ok)
    assert status == "pass" and whole.scored == [0, 100]


def test_round_plan_fits_the_rounds_in_the_budget_never_below_one_round():
    from lightning_recipe.core.budget import OneTimeBudget

    config = BaselineConfig()  # steps 100, max_steps 500
    assert RoundPlan(5).sizes(100) == [100]  # no budget: whole rounds, as before
    budget = OneTimeBudget(share=0.05, planned_steps=1000, members=["InputIndependentBaseline"])
    plan = RoundPlan(5, budget)
    assert plan.sizes(100) == [25, 25, 25, 25] and plan.sizes(3) == [3]
    plan.measured(config, pair_step_s=0.02, train_step_s=0.008)  # 1000 steps x 8 ms: 5% < the 1 s floor
    assert budget.step_s == 0.008 and (plan.rounds, plan.steps, plan.short) == (1, 100, True)
    long = RoundPlan(5, OneTimeBudget(share=0.05, planned_steps=10**6, members=["InputIndependentBaseline"]))
    long.measured(config, pair_step_s=0.02, train_step_s=0.008)  # 400 s of budget: up to max_steps
    assert (long.rounds, long.steps, long.short) == (5, 500, False)
    fixed = RoundPlan(2, OneTimeBudget(planned_steps=1000), fixed_rounds=True)
    fixed.measured(config, pair_step_s=0.02, train_step_s=0.008)
    assert (fixed.rounds, fixed.steps) == (2, 200)  # an explicit max_steps= stays
    assert (
        plan.numbers()["budget_steps"] == 100 and RoundPlan(5).numbers() == {} and RoundPlan(5).note(25) == ""
    )


class _GroupNet(nn.Module):
    """Ignores ``x``; reads a ``group`` tensor alike within a batch, other across batches."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(2, 2)

    def forward(self, x, group, labels=None):
        return self.emb(group)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(**batch), batch["labels"])


class _LeakNet(nn.Module):
    """Reads its labels inside ``forward``: a label leak."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.leak = nn.Linear(4, 3), nn.Embedding(3, 3)

    def forward(self, x, labels=None):
        return self.lin(x) + (0 if labels is None else self.leak(labels))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(**batch), batch["labels"])


def _dict_batches(kind: str, n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for j in range(n):
        x = torch.randn(16, 4, generator=g)
        if kind == "group":
            out.append({"x": x, "group": torch.full((16,), j % 2), "labels": torch.full((16,), j % 2)})
        else:
            out.append({"x": x, "labels": torch.randint(0, 3, (16,), generator=g)})
    return out


@pytest.mark.parametrize("kind", ["group", "leak"])
def test_no_floor_where_the_zeroed_copy_is_no_constant_predictor(kind):
    """A side input alike within each batch but not across them, or labels read by ``forward``: the
    zeroed copy could beat the labels' entropy, so it trains (a second reader's counterexamples)."""
    cls = _GroupNet if kind == "group" else _LeakNet
    make_copy = _copies(cls)
    config = BaselineConfig(steps=40, input_key="x", target_key="labels")
    zeroed = lambda b, check: zero_inputs(b, config, "T", check)  # noqa: E731
    pair = CopyPair(
        config, make_copy, _dict_batches(kind, 16, 0), _dict_batches(kind, 4, 1), lambda b: b, zeroed
    )
    assert pair.advance(0) is None
    assert pair.floor_kind is None and pair.floor_local == []
