"""The overhead budget: cadences, what each callback cost, and budgeted runs keeping their verdicts."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lightning_recipe import (
    BatchInspector,
    FirstLayerFilters,
    PredictionDynamics,
    RecipeReport,
    UpdateHealth,
    recipe_callbacks,
)
from lightning_recipe.core.budget import Cadence, CostMeter
from tests.helpers import LitModel, digits_arrays, loader, make_trainer, read_events, small_cnn


def digits(batch_size: int = 64):
    x, y = digits_arrays()
    return loader(x, y, batch_size=batch_size, shuffle=True)


# ---------------------------------------------------------------------- Cadence
def test_fixed_cadence_ignores_the_cost():
    c = Cadence(every=10, base=3, share=1e-9)
    c.start(100)
    steps = [s for s in range(100) if c.due(s) and (c.taken(s, 1e3, 1.0, 0.01) or True)]
    assert steps == list(range(0, 100, 10))


def test_budgeted_cadence_stretches_to_the_share_and_keeps_min_points():
    c = Cadence(every=None, base=5, share=0.01, min_points=2)
    c.start(10_000)
    c.taken(0, 0.0, 0.0, 0.0)
    assert c.next_due == 5  # nothing known yet: the base interval
    # 0.5 s spent in 0.5 s of training: the next point must wait until the cost is 1% again
    c.taken(5, 0.5, 0.5, 0.1)
    assert c.next_due == 5 + (((0.5 + 0.5) / 0.01 - 0.5) // 0.1 + 1)
    cheap = Cadence(every=None, base=5, share=0.01, min_points=6)
    cheap.start(100)
    cheap.taken(0, 0.0, 0.0, 0.0)
    cheap.taken(5, 100.0, 0.5, 0.1)  # far over budget, but 6 points must fit in 100 steps
    assert cheap.next_due == 5 + 100 // 5


def test_cost_meter_splits_one_time_from_periodic_cost():
    m = CostMeter()
    m.add("on_train_start", 2.0)
    m.add("on_train_batch_end", 0.5)
    m.add_render(False, 0.25)
    assert (m.before_s, m.during_s, m.render_s, m.total_s) == (2.0, 0.75, 0.25, 2.75)


@pytest.mark.parametrize("overhead", [0, 1.5, True, "1%"])
def test_overhead_must_be_a_fraction(overhead):
    with pytest.raises(ValueError, match=r"PredictionDynamics\(overhead="):
        PredictionDynamics(overhead=overhead)
    with pytest.raises(ValueError, match=r"recipe_callbacks\(overhead="):
        recipe_callbacks("overfit", overhead=overhead)


# ---------------------------------------------------------------------- presets
def test_recipe_callbacks_split_the_budget_and_explicit_cadences_stay_fixed():
    cbs = recipe_callbacks(
        "overfit", seed=0, overhead=0.04, overrides={"UpdateHealth": {"every_n_train_steps": 7}}
    )
    budgeted = {type(cb).__name__: cb.overhead for cb in cbs if hasattr(cb, "overhead")}
    assert set(budgeted) == {"BatchInspector", "PredictionDynamics", "UpdateHealth", "FirstLayerFilters"}
    assert all(share == pytest.approx(0.01) for share in budgeted.values())
    health = next(cb for cb in cbs if isinstance(cb, UpdateHealth))
    assert health.every_n_train_steps == 7 and health._cadence.fixed


# ---------------------------------------------------------------------- real runs
def test_a_short_run_still_gets_update_health_verdicts_at_the_default_cadence(tmp_path):
    # 40 steps: the former fixed 50-step cadence ran one check ("skipped: fewer than patience");
    # the budget fits patience + 2 checks in the planned run
    health = UpdateHealth()
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [health], max_steps=40)
    trainer.fit(LitModel(small_cnn()), digits())
    assert health.checks >= health.patience + 1
    assert [f.status for f in health.findings] == ["pass"], [str(f) for f in health.findings]
    figures = [s for s, *_ in read_events(trainer.logger).images("recipe/update_health/layers")]
    assert figures[0] == 0 and figures[-1] == health.last_check["step"] > 0  # the last check is drawn


def test_prediction_dynamics_measures_the_first_point_and_draws_the_last_however_small_the_budget(tmp_path):
    dynamics = PredictionDynamics(num_samples=8, overhead=1e-6)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [dynamics], max_steps=120, limit_val_batches=1)
    x, y = digits_arrays()
    trainer.fit(LitModel(small_cnn()), digits(), loader(x[:64], y[:64]))
    ev = read_events(trainer.logger)
    # scalars at the usual cadence (cheap, step 0 included); figures when the budget affords them,
    # here only at the end of fit (which shows the whole run, step 0 included)
    assert [s for s, _ in ev.scalars("recipe/prediction_dynamics/mean_true_prob")] == [0, 50, 100, 120]
    assert [s for s, *_ in ev.images("recipe/prediction_dynamics/trajectories")] == [120]
    assert [s for s, *_ in ev.images("recipe/prediction_dynamics/predictions")] == [120]
    assert dynamics.cost.points == 1 and dynamics.cost.render_s > 0


def test_prediction_dynamics_draws_early_when_the_budget_affords_it(tmp_path):
    dynamics = PredictionDynamics(num_samples=8, overhead=1.0)  # all of training: every point affords it
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [dynamics], max_steps=120, limit_val_batches=1)
    x, y = digits_arrays()
    trainer.fit(LitModel(small_cnn()), digits(), loader(x[:64], y[:64]))
    figures = [s for s, *_ in read_events(trainer.logger).images("recipe/prediction_dynamics/trajectories")]
    assert figures[0] < 120 and figures[-1] == 120, figures


def test_report_says_what_each_callback_cost(tmp_path):
    filters, report = FirstLayerFilters(), RecipeReport(print_summary=False)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [filters, UpdateHealth(), report], max_epochs=3, max_steps=-1)
    trainer.fit(LitModel(small_cnn()), digits(batch_size=256))
    with open(os.path.join(trainer.logger.log_dir, "recipe_report.json"), encoding="utf-8") as fh:
        cost = json.load(fh)["cost"]
    assert set(cost["callbacks"]) == {"FirstLayerFilters", "UpdateHealth"}
    assert cost["train_s"] > 0 and cost["during_s"] > 0
    row = cost["callbacks"]["FirstLayerFilters"]
    assert row["points"] >= 1 and row["during_pct"] is not None
    text = read_events(trainer.logger).texts("recipe/cost")
    assert "FirstLayerFilters" in text[-1][1] and "% of training" in text[-1][1]
    # the end of fit is always shown: the filters at the last step
    assert filters.history[-1][0] == trainer.global_step


@pytest.mark.slow
def test_budgeted_cadences_agree_across_two_process_ddp(tmp_path):
    # the budget reads each rank's clock; the ranks must still take the same collective points
    health = UpdateHealth()
    callbacks = [health, FirstLayerFilters(), BatchInspector(), PredictionDynamics(num_samples=4)]
    trainer = make_trainer(
        tmp_path, callbacks, max_steps=30, strategy="ddp_fork", devices=2, limit_val_batches=1
    )
    log_dir = trainer.logger.log_dir
    x, y = digits_arrays()
    trainer.fit(LitModel(small_cnn()), digits(), loader(x[:64], y[:64]))
    ev = read_events(log_dir)
    assert [s for s, *_ in ev.images("recipe/prediction_dynamics/trajectories")][-1] == 30
    assert ev.images("recipe/update_health/layers")[-1][0] > 0


# ---------------------------------------------------------------------- one-time checks: the budget (issue 14)
def test_one_time_budget_arithmetic_without_a_trainer():
    from lightning_recipe.core.budget import OneTimeBudget, plan_budget, steps_within

    assert plan_budget(0.05, 600.0, floor_s=1.0) == 30.0  # 5% of a 10-minute run
    assert plan_budget(0.05, 6.0, floor_s=1.0) == 1.0  # a short run: the floor
    assert plan_budget(0.05, None, floor_s=2.0) == 2.0  # an endless run: the floor
    assert steps_within(1.0, 0.01, minimum=25, maximum=500) == (100, False)
    assert steps_within(0.1, 0.01, minimum=25, maximum=500) == (25, True)  # the minimum a verdict needs
    assert steps_within(99.0, 0.01, minimum=25, maximum=500) == (500, False)
    members = ["DataInspector", "OverfitBatchCheck", "InputIndependentBaseline"]
    budget = OneTimeBudget(share=0.05, planned_steps=10_000, members=members, floor_s=1.0)
    assert budget.total_s == 1.0  # no step time measured yet
    budget.observe(0.02)
    budget.observe(5.0)  # the first measurement is kept
    assert budget.planned_s == pytest.approx(200.0) and budget.total_s == pytest.approx(10.0)
    # weights 1 : 2 : 4 of 7
    assert budget.allowance_s("InputIndependentBaseline") == pytest.approx(40 / 7)
    assert budget.allowance_s("DataInspector") == pytest.approx(10 / 7)
    assert budget.fraction("OverfitBatchCheck") == pytest.approx(0.05 * 2 / 7)
    budget.charge("OverfitBatchCheck", 0.5)
    assert "0.5 s of its 2.9 s one-time budget" in budget.note("OverfitBatchCheck", 40, short=True)
    budget.charge("OverfitBatchCheck", 3.0)  # spent more than its share: only the minimum does that
    assert "the minimum for a verdict, over its 2.9 s" in budget.note("OverfitBatchCheck", 300, short=False)


@pytest.mark.parametrize("value", [0, -0.1, 1.5, True, "5%"])
def test_one_time_must_be_a_fraction_or_none(value):
    from lightning_recipe import InputIndependentBaseline, OverfitBatchCheck

    for make in (InputIndependentBaseline, OverfitBatchCheck, recipe_callbacks):
        with pytest.raises(ValueError, match=r"\(one_time=.*between 0 and 1"):
            make(one_time=value)


def test_recipe_callbacks_pass_the_one_time_share_and_keep_explicit_step_counts():
    from lightning_recipe import InputIndependentBaseline

    cbs = {type(cb).__name__: cb for cb in recipe_callbacks("full", one_time=0.1)}
    assert cbs["InputIndependentBaseline"].one_time_share == cbs["OverfitBatchCheck"].one_time_share == 0.1
    assert cbs["DataInspector"].one_time_share == 0.1
    overrides = {"InputIndependentBaseline": {"max_steps": 200}}
    cbs = {type(cb).__name__: cb for cb in recipe_callbacks("full", overrides=overrides)}
    assert cbs["InputIndependentBaseline"]._fixed_max
    assert not InputIndependentBaseline()._fixed_max
    assert not any(getattr(cb, "one_time_share", None) for cb in recipe_callbacks("full", one_time=None))
