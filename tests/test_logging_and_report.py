import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from lightning_recipe import Finding, RecipeCheckError, RecipeReport, RecipeWarning
from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import RecipeCallback, check_choice, check_positive_int
from lightning_recipe.core.stats import TargetStats
from lightning_recipe.plots.style import new_figure
from lightning_recipe.report import findings_table
from tests.helpers import digits_arrays, loader, make_trainer, png_shape, read_events


class Writer(Callback):
    """Writes one of everything through lightning_recipe.writer at step 0."""

    def on_train_start(self, trainer, pl_module):
        recipe_logging.log_scalars(trainer, {"recipe/test/a": 1.5, "recipe/test/b": 2}, step=0)
        recipe_logging.log_text(trainer, "recipe/test/text", "**bold** | table", step=0)
        recipe_logging.log_image(trainer, "recipe/test/image", np.zeros((6, 10, 3), np.uint8), step=0)
        recipe_logging.log_histogram(trainer, "recipe/test/hist", torch.randn(100), step=0)

        def build():
            fig = new_figure(2, 1, dpi=40)
            fig.add_subplot().plot([1, 2, 3])
            return fig

        recipe_logging.log_figure(trainer, "recipe/test/figure", build, step=3)

    def teardown(self, trainer, pl_module, stage):
        recipe_logging.drain()  # before Lightning closes the logger


def test_everything_lands_in_tensorboard(tmp_path):
    trainer = make_trainer(tmp_path, [Writer()], max_steps=1)
    trainer.fit(BoringModel())
    recipe_logging.drain()
    ev = read_events(trainer.logger)
    assert ev.scalars("recipe/test/a") == [(0, 1.5)]
    assert ev.texts("recipe/test/text") == [(0, "**bold** | table")]
    [(step, w, h, png)] = ev.images("recipe/test/image")
    assert (step, w, h) == (0, 10, 6) and png_shape(png)[:2] == (6, 10)
    [(step, w, h, png)] = ev.images("recipe/test/figure")
    assert (step, w, h) == (3, 80, 40)
    assert len(ev.histograms("recipe/test/hist")) == 1


def test_without_tensorboard_files_are_written_and_it_says_so_once(tmp_path):
    recipe_logging._warned.clear()
    trainer = make_trainer(tmp_path, [Writer()], max_steps=1, logger=CSVLogger(tmp_path))
    with pytest.warns(RecipeWarning, match="no TensorBoardLogger is attached") as record:
        trainer.fit(BoringModel())
        recipe_logging.drain()
    assert sum("no TensorBoardLogger" in str(w.message) for w in record) == 1
    base = os.path.join(recipe_logging.log_dir(trainer), "recipe")
    assert Path(base, "scalars.csv").read_text().splitlines() == [
        "tag,step,value",
        "recipe/test/a,0,1.5",
        "recipe/test/b,0,2.0",
    ]
    assert Path(base, "test", "text", "step_00000000.md").read_text() == "**bold** | table"
    assert os.path.exists(os.path.join(base, "test", "image", "step_00000000.png"))
    assert os.path.exists(os.path.join(base, "test", "figure", "step_00000003.png"))
    assert json.loads(Path(base, "test", "hist", "step_00000000.json").read_text())["counts"]


def test_log_image_rejects_wrong_shapes(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=1)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) array, got shape \(4, 4\)"):
        recipe_logging.log_image(trainer, "recipe/x/y", np.zeros((4, 4)), 0)


class Verdicts(RecipeCallback):
    recipe_step = "test step"

    def __init__(self, status="warn", on_fail="warn"):
        super().__init__(on_fail=on_fail)
        self.status = status

    def on_train_start(self, trainer, pl_module):
        self.record(
            trainer,
            self.status,
            f"something is {self.status}",
            {"value": torch.tensor(1.25), "nan": float("nan")},
        )


def test_report_gathers_findings_into_text_json_and_summary(tmp_path, caplog):
    report = RecipeReport()
    trainer = make_trainer(tmp_path, [Verdicts("pass"), Verdicts("warn"), report], max_steps=2)
    with pytest.warns(RecipeWarning, match="Verdicts: something is warn"):
        trainer.fit(BoringModel())
    assert [f.status for f in report.findings] == ["pass", "warn"]
    text = read_events(trainer.logger).texts("recipe/0_report")
    card = text[-1][1].splitlines()
    assert card[0] == "**1 warn, 1 pass** (every number: `recipe_report.json` in the log dir)"
    assert card[2:6] == [
        "| status | check | message |",
        "| --- | --- | --- |",
        "| ⚠\xa0warn | Verdicts | something is warn |",  # the problems first
        "| ✓\xa0pass | Verdicts | something is pass |",
    ]
    assert "| Verdicts | value=1.25, nan=nan |" in card  # the numbers: a second table
    payload = json.loads(Path(report.path).read_text())
    assert payload["summary"] == {"pass": 1, "warn": 1, "fail": 0, "skipped": 0}
    assert payload["findings"][1]["numbers"] == {"value": 1.25, "nan": "nan"}
    assert os.path.dirname(report.path) == trainer.logger.log_dir


def test_on_fail_raise_raises_before_training_goes_on(tmp_path):
    trainer = make_trainer(tmp_path, [Verdicts("fail", on_fail="raise")], max_steps=2)
    with (
        pytest.raises(RecipeCheckError, match=r"\[fail\] Verdicts: something is fail") as err,
        pytest.warns(RecipeWarning),
    ):
        trainer.fit(BoringModel())
    assert err.value.finding.status == "fail"
    assert trainer.global_step == 0


def test_argument_validation_messages():
    with pytest.raises(
        ValueError, match=r"Verdicts\(on_fail='ignore'\): unknown value; pass one of 'warn' or 'raise'"
    ):
        Verdicts(on_fail="ignore")
    with pytest.raises(TypeError, match=r"X\(n=1.5\): pass an integer >= 1"):
        check_positive_int("X", "n", 1.5)
    with pytest.raises(ValueError, match=r"X\(n=0\): pass an integer >= 1"):
        check_positive_int("X", "n", 0)
    with pytest.raises(ValueError, match=r"X\(mode='up'\): unknown value; pass one of 'min' or 'max'"):
        check_choice("X", "mode", "up", ["min", "max"])
    with pytest.raises(ValueError, match=r"Finding\(status='ok'\): pass one of"):
        Finding("X", "ok", "m")
    with pytest.raises(ValueError, match=r"RecipeReport\(filename=''\)"):
        RecipeReport(filename="")


def test_findings_table_escapes_pipes_and_orders_by_recipe():
    table = findings_table(
        [Finding("LossAtInitCheck", "fail", "a | b"), Finding("FixedSeed", "pass", "seeded", {"seed": 1})]
    )
    lines = table.splitlines()
    assert lines[2].startswith("| fix random seed | FixedSeed | ✓ pass |")
    assert "a \\| b" in lines[3]
    nested = findings_table(
        [Finding("DataInspector", "pass", "ok", {"train": {"samples": 3}, "ratio": 1.23456, "n": 4})]
    )
    assert nested.splitlines()[2].endswith("| ratio=1.235, n=4 |")


class ShardStats(Callback):
    """Each rank computes target statistics of its shard and all-reduces them (as FinalBiasInit does)."""

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def on_train_start(self, trainer, pl_module):
        dl = trainer.train_dataloader
        ys = torch.cat([b[1] for b in dl])  # the rank's shard (Lightning's DistributedSampler)
        local = TargetStats.from_targets(ys, "multiclass", num_classes=10)
        reduced = RecipeCallback.all_reduce_sum(trainer, local.to_tensor(10))
        stats = TargetStats.from_tensor("multiclass", reduced)
        torch.save(
            {"local": local.count, "counts": stats.class_counts},
            os.path.join(self.out_dir, f"rank{trainer.global_rank}.pt"),
        )


@pytest.mark.slow
def test_target_statistics_all_reduce_under_ddp_equal_single_process(tmp_path):
    x, y = digits_arrays()
    data = loader(x[:500], y[:500], batch_size=50)
    trainer = make_trainer(
        tmp_path,
        [ShardStats(str(tmp_path))],
        max_steps=1,
        logger=False,
        strategy="ddp_fork",
        devices=2,
        use_distributed_sampler=True,
    )
    trainer.fit(_Tiny(), data)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    single = TargetStats.from_targets(torch.as_tensor(y[:500]), "multiclass", num_classes=10)
    assert (r0["local"], r1["local"]) == (250, 250)  # each rank saw only its own shard
    assert torch.equal(r0["counts"], r1["counts"])
    assert torch.equal(r0["counts"], single.class_counts)


class _Tiny(BoringModel):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)


class Crashes(RecipeCallback):
    def on_train_start(self, trainer, pl_module):
        raise IndexError("deep inside")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        raise AssertionError("must not run after the check stopped itself")


@pytest.mark.expect_callback_error
def test_an_error_inside_a_check_becomes_a_skipped_finding_and_training_goes_on(tmp_path):
    cb = Crashes()
    trainer = make_trainer(tmp_path, [cb], max_steps=3)
    with pytest.warns(
        RecipeWarning,
        match=r"Crashes stopped itself after an error and training goes on: IndexError: deep inside",
    ):
        trainer.fit(BoringModel())
    assert trainer.global_step == 3
    [finding] = cb.findings
    assert finding.status == "skipped"
    assert (
        finding.message == "skipped, because the check could not run on this model (IndexError: deep inside)"
    )


def test_a_callback_that_stopped_itself_fails_the_observer_effect_test(tmp_path):
    """The autouse fixture is what makes "same training with and without" able to fail: a hook replaced
    by a raising one is caught by the guard (training goes on, identical), and only the registry the
    fixture reads says the check never ran."""
    from lightning_recipe import PredictionDynamics
    from lightning_recipe.callbacks.base import STOPPED_AFTER_ERROR, _guard
    from tests.helpers import LitModel, assert_same_params, digits_loader, final_params, fit, mlp

    def boom(self, trainer, pl_module):
        raise RuntimeError("planted")

    torch.manual_seed(0)
    bare = LitModel(mlp(64, 10, dropout=0.2))
    fit(tmp_path / "bare", bare, [], digits_loader(128), max_steps=4)
    broken = PredictionDynamics(every_n_train_steps=2)
    broken.on_train_start = _guard(boom).__get__(broken)  # this instance only
    torch.manual_seed(0)
    with_cb = LitModel(mlp(64, 10, dropout=0.2))
    fit(tmp_path / "cb", with_cb, [broken], digits_loader(128), max_steps=4, quiet=True)
    assert_same_params(final_params(bare), final_params(with_cb))  # passes although the check crashed ...
    assert [name for name, *_ in STOPPED_AFTER_ERROR] == ["PredictionDynamics"]  # ... the fixture sees it
    STOPPED_AFTER_ERROR.clear()  # this test means it: the fixture would fail it otherwise


def test_report_card_orders_by_severity_then_recipe_and_wraps_long_messages():
    from lightning_recipe.report import report_markdown

    findings = [
        Finding("FixedSeed", "pass", "seeded"),
        Finding("TrainingLossCheck", "warn", "flat " * 30),
        Finding("LossAtInitCheck", "fail", "loss at init 812.6"),
        Finding("DataInspector", "fail", "duplicates | across splits"),
        Finding("UpdateHealth", "skipped", "too short"),
    ]
    lines = report_markdown(findings).splitlines()
    assert lines[0] == "**2 fail, 1 warn, 1 pass, 1 skipped**"
    assert [line.split(" | ")[1] for line in lines[4:9]] == [
        "DataInspector",
        "LossAtInitCheck",
        "TrainingLossCheck",
        "UpdateHealth",
        "FixedSeed",
    ]
    assert "duplicates \\| across splits" in lines[4] and "<br>" in lines[6]


def test_dashboard_layout_holds_only_charts_whose_tags_were_logged(tmp_path):
    from lightning_recipe import DumbBaselines, TrainingLossCheck, UpdateHealth
    from tests.helpers import LitModel, digits_loader, mlp

    report = RecipeReport(print_summary=False)
    callbacks = [DumbBaselines(), TrainingLossCheck(), UpdateHealth(every_n_train_steps=2), report]
    trainer = make_trainer(tmp_path, callbacks, max_steps=8, val_check_interval=4, limit_val_batches=2)
    trainer.fit(LitModel(mlp(64, 10)), digits_loader(256), digits_loader(64))
    ev = read_events(trainer.logger)
    assert "custom_scalars__config__" in ev.tags["tensors"]
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.util import tensor_util

    [event] = ev.acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).item())
    charts = {c.title: c for cat in layout.category for c in cat.chart}
    assert list(charts["validation loss vs dumb baselines"].multiline.tag) == [
        "^val_loss$",
        "^recipe/dumb_baselines/prior_loss$",
    ]
    assert "log10 update/weight ratio: median, min to max over layers" in charts
    assert not any("jitter" in title or "learning rate" in title for title in charts)  # never logged
    assert ev.scalars("recipe/report/pass")[-1][1] == sum(f.status == "pass" for f in report.findings)
    assert ev.has_scalar("recipe/report/best_val_loss")
