"""tune: a real Optuna study in a temporary SQLite file, pruning, bugs, HParams read back, two processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2

from lightning_recipe.tune import (
    importance_advice,
    make_pruner,
    make_sampler,
    parse_space,
    parse_spec,
    resolve_storage,
    tune,
)
from tests import tune_target
from tests.helpers import read_events

ROOT = Path(__file__).resolve().parent.parent


def hparams_of(run_dir):
    """(hparams, metric scalars) a TensorBoard run holds, read back from its event files."""
    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    values = {}
    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            for name, value in data.session_start_info.hparams.items():
                values[name] = value.string_value if value.HasField("string_value") else value.number_value
    scalars = {
        tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"] if tag.startswith("recipe/tune/")
    }
    return values, scalars


def test_a_real_study_in_a_temporary_sqlite_file_with_hparams_summary_and_ensemble(tmp_path):
    result = tune(
        tune_target.build, tune_target.SPACE, n_trials=3, root_dir=str(tmp_path), stage="init",
        sampler_seed=0, pruner="none", ensemble=2, verbose=False,
    )  # fmt: skip
    assert (tmp_path / "recipe.db").exists()
    assert isinstance(result.study.sampler, optuna.samplers.RandomSampler)  # the recipe's advice, by default
    study = optuna.load_study(study_name="recipe", storage=f"sqlite:///{tmp_path / 'recipe.db'}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir == tmp_path / "recipe" / f"trial_{t.number:04d}" and (run_dir / "weights.pt").exists()
        hparams, metrics = hparams_of(run_dir)
        assert hparams["lr"] == pytest.approx(t.params["lr"]) and hparams["hidden"] == t.params["hidden"]
        assert hparams["state"] == "complete" and hparams["trial"] == t.number
        assert metrics["recipe/tune/best_val_loss"] == pytest.approx(t.value, rel=1e-5)
        assert (
            metrics["recipe/tune/pass"] >= 2 and metrics["recipe/tune/fail"] == 0
        )  # seed, bias init, loss at init
    summary = json.loads((tmp_path / "recipe" / "study_summary.json").read_text())
    assert summary["best"]["trial"] == study.best_trial.number and summary["counts"]["complete"] == 3
    assert set(summary["importances"]) == {"lr", "hidden"}
    assert summary["ensemble"]["members"][0]["name"] == f"trial {study.best_trial.number}"
    assert result.summary["advice"][0].startswith(f"best trial {study.best_trial.number}: val_loss=")
    events = read_events(tmp_path / "recipe" / "summary")
    [(_, text)] = events.texts("recipe/tune/summary")
    assert text.startswith("**Study `recipe`** (RandomSampler): 3 trials: 3 complete")
    assert events.has_image("recipe/ensemble/gain") and events.has_text("recipe/ensemble/summary")


def _with_queue(tmp_path, *params):
    storage = f"sqlite:///{tmp_path / 'queued.db'}"
    study = optuna.create_study(study_name="queued", storage=storage)
    for p in params:
        study.enqueue_trial(p)
    return storage


def test_optuna_prunes_a_trial_on_the_monitored_metric(tmp_path):
    storage = _with_queue(tmp_path, {"x": 0.5}, {"x": 5.0})
    result = tune(
        tune_target.build_constant, {"x": "float:0:10"}, n_trials=2, study_name="queued", storage=storage,
        root_dir=str(tmp_path), stage=None, pruner=optuna.pruners.ThresholdPruner(upper=1.0), verbose=False,
    )  # fmt: skip
    good, bad = result.study.get_trials()
    assert good.state == TrialState.COMPLETE and good.value == pytest.approx(0.5)
    assert len(good.intermediate_values) == 3  # max_epochs=3
    assert bad.state == TrialState.PRUNED and bad.intermediate_values == {0: 5.0}
    assert bad.user_attrs["values"] == [5.0]  # stopped after its first validation
    hparams, _ = hparams_of(bad.user_attrs["run_dir"])
    assert hparams["state"] == "pruned"
    assert result.summary["counts"]["pruned"] == 1
    assert "1 trial(s) pruned by ThresholdPruner on val_loss" in result.summary["advice"]


def test_a_trial_whose_recipe_checks_fail_is_a_bug_not_a_bad_hyperparameter(tmp_path):
    storage = _with_queue(tmp_path, {"reduction": "sum"}, {"reduction": "mean"})
    result = tune(
        tune_target.build, {"reduction": ["mean", "sum"]}, n_trials=2, study_name="queued", storage=storage,
        root_dir=str(tmp_path), stage="init", pruner="none", verbose=False,
    )  # fmt: skip
    buggy, fine = result.study.get_trials()
    assert buggy.state == TrialState.FAIL and buggy.user_attrs["recipe_bug"] is True
    assert any(f.startswith("LossAtInitCheck: ") for f in buggy.user_attrs["recipe_failures"])
    assert fine.state == TrialState.COMPLETE and result.study.best_trial.number == fine.number
    hparams, metrics = hparams_of(buggy.user_attrs["run_dir"])
    assert hparams["state"] == "bug" and metrics["recipe/tune/fail"] >= 1
    assert result.summary["counts"]["bug"] == 1 and result.summary["bugs"][0]["trial"] == buggy.number
    assert any(
        "a bug rather than a bad hyperparameter (trial 0: LossAtInitCheck" in a
        for a in result.summary["advice"]
    )


def test_samplers_pruners_storages_and_spaces_by_name(tmp_path):
    assert isinstance(make_sampler("random", 1), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("tpe"), optuna.samplers.TPESampler)
    assert isinstance(make_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    with pytest.raises(
        ValueError, match=r"tune\(sampler='grid'\): unknown sampler; pass one of \['random', 'tpe'"
    ):
        make_sampler("grid")
    with pytest.raises(ValueError, match=r"tune\(pruner='early'\): unknown pruner"):
        make_pruner("early")
    assert resolve_storage(None, str(tmp_path), "s") == f"sqlite:///{tmp_path / 's.db'}"
    assert resolve_storage(str(tmp_path / "a.db"), "", "s") == f"sqlite:///{tmp_path / 'a.db'}"
    assert resolve_storage("postgresql://u@h/db", "", "s") == "postgresql://u@h/db"
    journal = resolve_storage(f"journal:{tmp_path / 'j.journal'}", "", "s")
    assert isinstance(journal, optuna.storages.JournalStorage)
    with pytest.raises(ValueError, match=r"tune\(storage='study'\): not an Optuna URL"):
        resolve_storage("study", "", "s")
    space = parse_space(
        {"lr": "log:1e-4:1e-1", "n": "int:8:64:log", "opt": ["adam", "sgd"], "p": "choice:0,0.5"}
    )
    assert space["lr"].log and space["n"].log and space["opt"].choices == ("adam", "sgd")
    assert space["p"].choices == (0, 0.5)
    with pytest.raises(ValueError, match=r"tune\(space=\{'lr': 'log:a:b'\}\): could not convert"):
        parse_spec("lr", "log:a:b")
    with pytest.raises(ValueError, match=r"tune\(space=\{'lr': 'uniform:0:1'\}\): unknown parameter form"):
        parse_spec("lr", "uniform:0:1")
    with pytest.raises(ValueError, match=r"tune\(mode='up'\): pass 'min' or 'max'"):
        tune(tune_target.build, tune_target.SPACE, mode="up")
    with pytest.raises(ValueError, match=r"tune\(ensemble=1\)"):
        tune(tune_target.build, tune_target.SPACE, ensemble=1)


def test_importance_advice_says_what_to_sample_densely():
    assert importance_advice({"lr": 0.9, "dropout": 0.04}) == (
        "`lr` matters (0.90), `dropout` does not (0.04): sample `lr` more densely (more trials, a range "
        "narrowed around its best value) and fix `dropout`"
    )
    assert importance_advice({"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}).startswith(
        "no parameter stands out"
    )


def test_a_monitor_that_is_never_logged_stops_the_study(tmp_path):
    with pytest.raises(
        ValueError, match=r"tune\(monitor='val_acc'\): trial 0 never logged it; the logged metrics"
    ):
        tune(tune_target.build, tune_target.SPACE, n_trials=1, root_dir=str(tmp_path), stage=None,
             monitor="val_acc", verbose=False)  # fmt: skip


@pytest.mark.slow
def test_two_processes_share_one_study_and_no_trial_is_lost_or_run_twice(tmp_path):
    journal = tmp_path / "shared.journal"
    command = [
        sys.executable, "-m", "lightning_recipe.tune", "tests/tune_target.py:build", "--n-trials", "3",
        "--study-name", "shared", "--storage", f"journal:{journal}", "--root-dir", str(tmp_path),
        "--stage", "none", "--pruner", "none", "--max-epochs", "1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([*command, "--sampler-seed", str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    outputs = [w.communicate(timeout=240) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [
        {int(line.split()[2]) for line in err.splitlines() if line.startswith("[tune] trial ")}
        for _, err in outputs
    ]
    assert len(ran[0]) == len(ran[1]) == 3 and not ran[0] & ran[1]  # each ran its own three
    study = optuna.load_study(
        study_name="shared", storage=resolve_storage(f"journal:{journal}", "", "shared")
    )
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(6)) and ran[0] | ran[1] == set(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    runs = sorted(p.name for p in (tmp_path / "shared").iterdir() if p.name.startswith("trial_"))
    assert runs == [f"trial_{i:04d}" for i in range(6)]
    assert all(len(list((tmp_path / "shared" / r).glob("events.out.tfevents.*"))) >= 1 for r in runs)
