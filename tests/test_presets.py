import json
import logging
import os

import pytest
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from lightning_recipe import EarlyStopping, FixedSeed, RecipeReport, recipe_callbacks
from lightning_recipe.presets import STAGES


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_builds_its_callbacks_and_a_report(stage):
    callbacks = recipe_callbacks(stage, seed=3)
    names = [type(cb).__name__ for cb in callbacks]
    assert names == [*STAGES[stage], "RecipeReport"]
    assert all(isinstance(cb, Callback) for cb in callbacks)
    assert all(hasattr(cb, "findings") for cb in callbacks if not isinstance(cb, RecipeReport))
    assert len({cb.state_key for cb in callbacks}) == len(callbacks)


def test_stages_follow_the_recipe():
    assert {"FirstLayerFilters", "EarlyStopping"} <= set(STAGES["overfit"]) - set(STAGES["skeleton"])
    for name in ("FixedSeed", "FinalBiasInit", "LossAtInitCheck", "BatchInspector", "PredictionDynamics"):
        assert name in STAGES["skeleton"]


def test_shared_arguments_overrides_and_exclude():
    callbacks = recipe_callbacks(
        "regularize",
        seed=5,
        monitor="val_acc",
        mode="max",
        exclude=["OverfitBatchCheck"],
        overrides={"EarlyStopping": {"patience": 9}, "RecipeReport": {"print_summary": False}},
        report=True,
    )
    by_name = {type(cb).__name__: cb for cb in callbacks}
    assert "OverfitBatchCheck" not in by_name
    assert isinstance(by_name["FixedSeed"], FixedSeed) and by_name["FixedSeed"].seed == 5
    stop = by_name["EarlyStopping"]
    assert isinstance(stop, EarlyStopping) and stop.monitor == "val_acc" and stop.mode == "max"
    assert stop.patience == 9 and stop.restore_best_weights
    assert by_name["RecipeReport"].print_summary is False
    assert "RecipeReport" not in {type(cb).__name__ for cb in recipe_callbacks("init", report=False)}


def test_bad_arguments_name_the_choices():
    with pytest.raises(
        ValueError,
        match=r"recipe_callbacks\(stage='train'\): unknown stage; pass one of \['data', 'full', 'init'",
    ):
        recipe_callbacks("train")
    with pytest.raises(ValueError, match="unknown callback 'Seed' in exclude/overrides"):
        recipe_callbacks("init", exclude=["Seed"])


@pytest.mark.slow
def test_the_full_preset_runs_under_two_process_ddp_with_the_same_verdicts(tmp_path):
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    from tests.helpers import DumpFindings, LitModel, digits_arrays, loader, make_trainer, small_cnn

    callbacks = recipe_callbacks("full", seed=0, overrides={"RecipeReport": {"print_summary": False}})
    x, y = digits_arrays()
    trainer = make_trainer(
        tmp_path,
        [*callbacks, DumpFindings(tmp_path)],
        max_steps=-1,
        max_epochs=2,
        devices=2,
        strategy=DDPStrategy(start_method="fork", timeout=timedelta(seconds=90)),
    )
    log_dir = trainer.logger.log_dir
    trainer.fit(LitModel(small_cnn()), loader(x[:512], y[:512], shuffle=True), loader(x[512:768], y[512:768]))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    verdicts = [
        [(f["check"], f["status"]) for f in rank] for rank in ranks
    ]  # messages may hold per-rank numbers
    assert verdicts[0] == verdicts[1]
    assert [f["check"] for f in ranks[0] if f["status"] in ("warn", "fail")] == []
    assert {"FixedSeed", "FinalBiasInit", "LossAtInitCheck", "OverfitBatchCheck"} <= {
        f["check"] for f in ranks[0]
    }
    assert os.path.exists(os.path.join(log_dir, "recipe_report.json"))


def _fit_full_preset(tmp_path, logger):
    from tests.helpers import LitModel, digits_arrays, loader, make_trainer, small_cnn

    callbacks = recipe_callbacks("full", seed=0)
    x, y = digits_arrays()
    trainer = make_trainer(tmp_path, callbacks, logger=logger, max_steps=-1, max_epochs=2)
    trainer.fit(LitModel(small_cnn()), loader(x[:256], y[:256], shuffle=True), loader(x[256:384], y[256:384]))
    return callbacks[-1], trainer


def test_the_full_preset_with_logger_false_writes_no_files(tmp_path, caplog):
    for name in ("lightning.pytorch", "lightning.fabric"):  # the summary goes through rank_zero_info
        caplog.set_level(logging.INFO, logger=name)
    report, _ = _fit_full_preset(tmp_path, logger=False)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == []
    assert report.path is None
    checks = {f.check for f in report.findings}
    assert {"FixedSeed", "DataInspector", "LossAtInitCheck", "UpdateHealth", "EarlyStopping"} <= checks
    assert not [f for f in report.findings if "could not run" in f.message]  # no check stopped itself
    assert (
        "lightning_recipe report:" in caplog.text and "EarlyStopping: " in caplog.text
    )  # the summary still prints
    assert "full report:" not in caplog.text


def test_the_full_preset_with_a_csv_logger_writes_its_files(tmp_path):
    report, trainer = _fit_full_preset(tmp_path, logger=CSVLogger(tmp_path))
    log_dir = trainer.logger.log_dir
    assert report.path == os.path.join(log_dir, "recipe_report.json") and os.path.exists(report.path)
    written = {
        p.suffix for p in (tmp_path / "lightning_logs" / "version_0" / "recipe").rglob("*") if p.is_file()
    }
    assert {".csv", ".png", ".md"} <= written
    assert not [f for f in report.findings if "could not run" in f.message]
