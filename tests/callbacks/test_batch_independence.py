"""BatchIndependenceCheck on real Trainer runs: mixing bugs trip it, per-sample models stay silent."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torch.nn import functional as F

from lightning_recipe import BatchIndependenceCheck, RecipeCheckError, RecipeReport
from tests.helpers import (
    DumpFindings,
    LitModel,
    assert_same_params,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    png_shape,
    read_events,
    small_cnn,
)

TAG = "recipe/batch_independence/dependency"


def digits_loader(n: int = 256, batch_size: int = 32, **kw):
    x, y = digits_arrays()
    return loader(x[:n], y[:n], batch_size=batch_size, **kw)


class RowRNNish(nn.Module):
    """Processes image rows as a sequence-first (rows, N, width) tensor.

    ``bug=True`` gets there with ``view`` where ``permute`` was meant: the rows of different
    images end up in the same "sample".
    """

    def __init__(self, bug: bool = False) -> None:
        super().__init__()
        self.bug = bug
        self.row = nn.Linear(8, 16)
        self.head = nn.Linear(8 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        rows = x.view(h, n, w) if self.bug else x[:, 0].permute(1, 0, 2)
        feats = torch.tanh(self.row(rows))  # (rows, N, 16)
        return self.head(feats.permute(1, 0, 2).reshape(n, -1))


class BatchCentred(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - x.mean(0))  # "normalise" with the batch mean: a reduction over dim 0


class SoftmaxDim0(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(0)  # softmax over the batch instead of the classes


def bn_cnn(dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(8 * 16, 10),
    )


def ln_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 10))


def fit(tmp_path, model, callbacks, data=None, **kw):
    trainer = make_trainer(tmp_path, callbacks, **kw)
    trainer.fit(model, data if data is not None else digits_loader())
    return trainer


# ---------------------------------------------------------------------- verdicts in real runs
@pytest.mark.parametrize(
    "net", [lambda: RowRNNish(bug=True), BatchCentred, SoftmaxDim0], ids=["view", "mean-dim0", "softmax-dim0"]
)
def test_batch_independence_flags_mixing_bugs(tmp_path, net):
    torch.manual_seed(0)
    check = BatchIndependenceCheck()
    with pytest.warns(UserWarning, match="mixes samples across the batch"):
        trainer = fit(tmp_path, LitModel(net()), [check], max_steps=2)
    (finding,) = check.findings
    assert finding.status == "fail"
    assert finding.numbers["mixing_ratio"] > 0 and finding.numbers["batch_size"] == 32
    events = read_events(trainer.logger)
    assert events.scalars("recipe/batch_independence/mixing_ratio")[0][1] > 0


@pytest.mark.parametrize(
    "net",
    [small_cnn, RowRNNish, bn_cnn, ln_mlp, lambda: bn_cnn(dropout=0.5)],
    ids=["cnn", "rows-permuted", "batchnorm-train-mode", "layernorm", "batchnorm+dropout"],
)
def test_batch_independence_passes_per_sample_models(tmp_path, net):
    torch.manual_seed(0)
    check = BatchIndependenceCheck()
    model = LitModel(net())
    trainer = fit(tmp_path, model, [check], max_steps=2)
    (finding,) = check.findings
    assert finding.status == "pass", finding.message
    assert finding.global_step == 0
    assert model.training and all(m.training for m in model.modules())
    events = read_events(trainer.logger)
    assert events.scalars("recipe/batch_independence/mixing_ratio") == [(0, 0.0)]
    ((step, _, _, png),) = events.images(TAG)
    assert step == 0 and png_shape(png)[0] > 100


def test_batch_independence_raise_stops_before_the_first_update(tmp_path):
    torch.manual_seed(0)
    model = LitModel(BatchCentred())
    before = final_params(model)
    with pytest.raises(RecipeCheckError, match=r"BatchIndependenceCheck: the model mixes samples.*dim 0"):
        fit(tmp_path, model, [BatchIndependenceCheck(on_fail="raise")], max_steps=2)
    assert_same_params(before, final_params(model))


def test_batch_independence_batch_size_one_is_skipped_with_a_clear_message(tmp_path):
    check = BatchIndependenceCheck()
    fit(tmp_path, LitModel(small_cnn()), [check], data=digits_loader(4, batch_size=1), max_steps=1)
    (finding,) = check.findings
    assert finding.status == "skipped"
    assert finding.message.startswith("batch size 1: with one sample there is no other sample to mix with")


def test_batch_independence_dead_network_is_not_mixing(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        net[1].bias.fill_(-50.0)
    check = BatchIndependenceCheck()
    with pytest.warns(UserWarning, match="no dependency on its own input"):
        fit(tmp_path, LitModel(net), [check], max_steps=1)
    assert check.findings[0].status == "fail"


# ---------------------------------------------------------------------- sequences, tokens, dict batches
class RowPredictor(LightningModule):
    """Predicts the next row of a digit image from the rows so far (8 rows of 8 pixels)."""

    def __init__(self, mask: str = "causal") -> None:
        super().__init__()
        self.mask = mask
        self.inp = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 8)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        h = self.inp(rows)
        t = rows.shape[1]
        diagonal = {"causal": 1, "off-by-one": 2}.get(self.mask)
        mask = None if diagonal is None else torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=diagonal)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        return self.out(self.norm(h + a))

    def training_step(self, batch, batch_idx):
        (rows,) = batch
        return F.mse_loss(self(rows[:, :-1]), rows[:, 1:])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


@pytest.mark.parametrize(
    "mask, expected, leak",
    [("causal", "pass", None), ("none", "fail", [0, 1]), ("off-by-one", "fail", [0, 1])],
)
def test_batch_independence_causal_check_catches_missing_and_off_by_one_masks(tmp_path, mask, expected, leak):
    torch.manual_seed(0)
    x, _ = digits_arrays()
    check = BatchIndependenceCheck(causal_dim=1)
    trainer = fit(tmp_path, RowPredictor(mask), [check], data=loader(x[:64, 0], batch_size=16), max_steps=1)
    batch_finding, causal = check.findings
    assert batch_finding.status == "pass"
    assert causal.status == expected, causal.message
    if leak:
        assert causal.numbers["first_leak"] == leak
        assert causal.message.startswith(
            "causal leak along dim 1: the output at position 0 depends on inputs at position 1"
        )
    events = read_events(trainer.logger)
    leaks = events.scalars("recipe/batch_independence/causal_leaks")[0][1]
    assert (leaks == 0) == (expected == "pass")


class TokenModel(LightningModule):
    """Dict batches of token ids; called as ``self(**inputs)``."""

    def __init__(self, mix: bool = False) -> None:
        super().__init__()
        self.mix = mix
        self.emb = nn.Embedding(17, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.emb(input_ids) * attention_mask[..., None]
        if self.mix:
            h = h.view(h.shape[1], h.shape[0], -1).transpose(0, 1)
        return self.head(h.mean(1))

    def training_step(self, batch, batch_idx):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        return F.cross_entropy(self(**inputs), batch["labels"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DictDigits(torch.utils.data.Dataset):
    """Digits as token ids (pixel intensities 0-16), with a mask and labels, in dict batches."""

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        self.ids = torch.as_tensor(d.data[:64], dtype=torch.long)
        self.labels = torch.as_tensor(d.target[:64])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(64), "labels": self.labels[i]}


def test_batch_independence_calls_a_named_argument_forward_without_configuration(tmp_path):
    check = BatchIndependenceCheck()  # TokenModel.forward(input_ids, attention_mask): called with those keys
    data = torch.utils.data.DataLoader(DictDigits(), batch_size=16)
    fit(tmp_path, TokenModel(mix=True), [check], data=data, max_steps=1)
    (finding,) = check.findings
    assert finding.status == "fail", finding.message
    assert finding.numbers["sources"] == ["inputs['attention_mask']", "embedding 'emb'"]


@pytest.mark.parametrize("mix, expected", [(False, "pass"), (True, "fail")])
def test_batch_independence_token_ids_in_dict_batches(tmp_path, mix, expected):
    torch.manual_seed(0)
    check = BatchIndependenceCheck(
        input_key=lambda b: {k: b[k] for k in ("input_ids", "attention_mask")},
        forward=lambda module, inputs: module(**inputs),
    )
    data = torch.utils.data.DataLoader(DictDigits(), batch_size=16)
    fit(tmp_path, TokenModel(mix), [check], data=data, max_steps=1)
    (finding,) = check.findings
    assert finding.status == expected, finding.message
    assert finding.numbers["sources"] == ["inputs['attention_mask']", "embedding 'emb'"]


class UnnamedTokenModel(TokenModel):
    """``forward(ids, mask)``: named after no key of the batch, so no call convention fits it."""

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(ids, mask)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])


def test_batch_independence_unsupported_call_says_pass_forward(tmp_path):
    check = BatchIndependenceCheck(input_key=lambda b: {k: b[k] for k in ("input_ids", "attention_mask")})
    data = torch.utils.data.DataLoader(DictDigits(), batch_size=16)
    fit(tmp_path, UnnamedTokenModel(), [check], data=data, max_steps=1)
    (finding,) = check.findings
    assert finding.status == "skipped"
    assert "forward pass failed" in finding.message and "pass `forward=`" in finding.message


def test_batch_independence_on_demand_check_without_trainer():
    torch.manual_seed(0)
    check = BatchIndependenceCheck(num_samples=2)
    x = torch.randn(8, 1, 8, 8)
    assert check.check(bn_cnn().train(), x).status == "pass"
    assert check.chart is not None and check.chart.samples == [0, 7]
    with pytest.warns(UserWarning, match="mixes samples"):
        assert check.check(SoftmaxDim0(), x).status == "fail"
    strict = BatchIndependenceCheck(causal_dim=1, strict=True, on_fail="raise")
    with pytest.raises(
        RecipeCheckError,
        match="causal leak along dim 1: the output at position 0 depends on inputs at position 0",
    ):
        strict.check(RowPredictor("causal"), torch.randn(4, 7, 8))


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"on_fail": "stop"}, ValueError, r"BatchIndependenceCheck\(on_fail='stop'\): unknown value"),
        ({"causal_dim": 0}, ValueError, r"causal_dim=0\): that is the batch dimension"),
        ({"num_samples": 0}, ValueError, r"num_samples=0\): pass an integer >= 1"),
        ({"tolerance": 2}, ValueError, r"tolerance=2\): pass a number in \[0, 1\)"),
        ({"forward": "self"}, TypeError, r"forward='self'\): pass a callable"),
        ({"input_key": 1.5}, TypeError, r"input_key=1.5\): expected a dict key"),
        ({"batch_dim": -1}, ValueError, r"batch_dim=-1\): pass an integer >= 0"),
    ],
)
def test_batch_independence_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchIndependenceCheck(**kwargs)


# ---------------------------------------------------------------------- never perturb, resume, quiet
def test_batch_independence_does_not_change_training(tmp_path):
    def run(callbacks, sub):
        torch.manual_seed(0)
        model = LitModel(bn_cnn(dropout=0.5))
        fit(tmp_path / sub, model, callbacks, data=digits_loader(shuffle=True), max_steps=6)
        return final_params(model)

    with_check = run([BatchIndependenceCheck(causal_dim=None)], "a")
    assert_same_params(run([], "b"), with_check)


def test_batch_independence_state_round_trip_and_real_resume(tmp_path):
    torch.manual_seed(0)
    check = BatchIndependenceCheck()
    trainer = fit(tmp_path / "first", LitModel(small_cnn()), [check], max_steps=2)
    state = check.state_dict()
    assert state["done"] is True and state["findings"][0]["status"] == "pass"
    fresh = BatchIndependenceCheck()
    fresh.load_state_dict(state)
    clone = pickle.loads(pickle.dumps(fresh))
    assert clone.state_dict() == state and clone.findings == check.findings
    ckpt = str(tmp_path / "first.ckpt")
    trainer.save_checkpoint(ckpt)

    resumed = BatchIndependenceCheck()
    trainer2 = make_trainer(tmp_path / "second", [resumed], max_steps=4)
    trainer2.fit(LitModel(small_cnn()), digits_loader(), ckpt_path=ckpt)
    assert [f.status for f in resumed.findings] == ["pass"]
    assert resumed.findings[0].global_step == 0  # restored, not redone at step 2
    assert not read_events(trainer2.logger).has_image(TAG)


class _SanityProbe(Callback):
    def on_sanity_check_end(self, trainer, pl_module):
        self.findings_then = [
            list(cb.findings) for cb in trainer.callbacks if isinstance(cb, BatchIndependenceCheck)
        ]


def test_batch_independence_is_quiet_during_the_sanity_check(tmp_path):
    probe = _SanityProbe()
    check = BatchIndependenceCheck()
    trainer = make_trainer(tmp_path, [check, probe], max_steps=1, num_sanity_val_steps=2, limit_val_batches=2)
    trainer.fit(LitModel(small_cnn()), digits_loader(), digits_loader(64))
    assert probe.findings_then == [[]]
    assert len(check.findings) == 1


def test_batch_independence_reports_to_recipe_report(tmp_path):
    report = RecipeReport(print_summary=False)
    fit(tmp_path, LitModel(small_cnn()), [BatchIndependenceCheck(), report], max_steps=1)
    with open(report.path, encoding="utf-8") as fh:
        payload = json.load(fh)
    assert [(f["check"], f["status"]) for f in payload["findings"]] == [("BatchIndependenceCheck", "pass")]
    assert payload["findings"][0]["step"] == "use backprop to chart dependencies"


# ---------------------------------------------------------------------- DDP
class RankMixing(nn.Module):
    """Mixes the batch on rank 1 only: rank 0 alone would pass."""

    def __init__(self) -> None:
        super().__init__()
        self.net = small_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return self.net(x - x.mean(0) if rank == 1 else x)


@pytest.mark.slow
def test_batch_independence_same_verdict_on_every_rank_under_ddp(tmp_path):
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    torch.manual_seed(0)
    trainer = make_trainer(
        tmp_path,
        [BatchIndependenceCheck(), DumpFindings(tmp_path)],
        max_steps=1,
        devices=2,
        strategy=DDPStrategy(start_method="fork", timeout=timedelta(seconds=60)),
    )
    log_dir = trainer.logger.log_dir
    trainer.fit(LitModel(RankMixing()), digits_loader(128, batch_size=16))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    (finding,) = ranks[0]
    assert finding["status"] == "fail" and finding["numbers"]["rank"] == 1
    assert "mixes samples" in finding["message"]
    events = read_events(log_dir)
    assert len(events.images(TAG)) == 1
    assert not math.isnan(events.scalars("recipe/batch_independence/mixing_ratio")[0][1])


def test_batch_independence_calls_a_forward_kwargs_module_with_its_dict_batch(tmp_path):
    from tests.callbacks.kwargs_model import KwargsClassifier, dict_loader

    x, y = digits_arrays()
    check = BatchIndependenceCheck()
    torch.manual_seed(0)
    fit(tmp_path, KwargsClassifier(), [check], data=dict_loader(x[:64], y[:64]), max_steps=1)
    (finding,) = check.findings
    assert finding.status == "pass", finding.message
    assert finding.numbers["sources"] == ["inputs['x']"]


def test_batch_independence_records_one_skipped_finding_when_one_reason_stops_both_checks(tmp_path):
    check = BatchIndependenceCheck(
        causal_dim=1
    )  # image logits (N, 10) have no sequence like the (N, 1, 8, 8) input
    fit(tmp_path, LitModel(small_cnn()), [check], max_steps=1)
    (finding,) = check.findings
    assert finding.status == "skipped" and "check `causal_dim=`" in finding.message
    resumed = BatchIndependenceCheck(causal_dim=1)
    resumed.load_state_dict(check.state_dict())
    assert [f.status for f in resumed.findings] == ["skipped"]
