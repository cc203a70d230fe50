"""The examples run (tiny step counts) and write TensorBoard logs with the recipe's evidence."""

import json
import os
import sys
from pathlib import Path

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)


@pytest.mark.slow
def test_digits_demo_runs_the_full_recipe(tmp_path, capsys):
    import digits

    trainer = digits.main(["--fast", "--logdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {tmp_path}" in out
    report = json.loads(Path(trainer.logger.log_dir, "recipe_report.json").read_text())
    checks = {f["check"] for f in report["findings"]}
    assert {"FixedSeed", "FinalBiasInit", "LossAtInitCheck", "EarlyStopping"} <= checks
    assert os.listdir(trainer.logger.log_dir)


@pytest.mark.slow
def test_imbalanced_example_shows_the_hockey_stick(tmp_path, capsys):
    import imbalanced

    losses = imbalanced.main(["--logdir", str(tmp_path), "--epochs", "1", "--first-steps", "10"])
    assert losses["with"][0] < losses["without"][0] * 0.6  # prior bias: ~0.30 vs ln 2
    assert "FinalBiasInit" in capsys.readouterr().out
    assert os.path.isdir(tmp_path / "imbalanced" / "with_bias_init")


@pytest.mark.slow
def test_regression_example_sets_the_mean_bias(tmp_path):
    import regression

    check = regression.main(["--logdir", str(tmp_path), "--epochs", "1"])
    [finding] = check.findings
    assert finding.status == "pass"


@pytest.mark.slow
def test_cli_example_builds_every_callback_from_yaml(tmp_path):
    import cli

    config = os.path.join(EXAMPLES, "cli_config.yaml")
    run = cli.main(
        [
            "fit",
            "--config",
            config,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    names = {type(cb).__name__ for cb in run.trainer.callbacks}
    from lightning_recipe.presets import STAGES

    assert set(STAGES["full"]) | {"RecipeReport"} <= names


@pytest.mark.slow
def test_tune_example_runs_a_small_study(tmp_path, capsys):
    import tune

    result = tune.main(["--fast", "--logdir", str(tmp_path)])
    assert len(result.study.trials) == 2
    assert (tmp_path / "tune" / "digits.db").exists()
    assert (tmp_path / "tune" / "digits" / "trial_0000").is_dir()
    assert f"tensorboard --logdir {tmp_path / 'tune'}" in capsys.readouterr().out


@pytest.mark.slow
def test_language_model_example_runs_the_full_recipe_with_zero_config(tmp_path, capsys):
    pytest.importorskip("transformers")
    import language_model

    trainer = language_model.main(["--fast", "--logdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {tmp_path}" in out
    report = json.loads(Path(trainer.logger.log_dir, "recipe_report.json").read_text())
    status = {f["check"]: f["status"] for f in report["findings"]}
    assert status["InputIndependentBaseline"] == "pass"
    assert status["BatchInspector"] == "pass"  # padding labels are -100: no padding in the loss
    assert status["LRScheduleAudit"] == "pass"
