"""DumbBaselines' verdict without a Trainer: scripted histories, each verdict and its twin."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_recipe.core.baselines import BaselineScores, dumb_baselines
from lightning_recipe.core.checks.dumb_baselines import (
    Comparison,
    Reducer,
    check_arguments,
    check_compare_to,
    check_streams,
    judge,
    resolve_comparison,
    resolve_task,
    score_baselines,
)
from lightning_recipe.core.stats import TargetStats
from lightning_recipe.findings import Skip

SCORES = BaselineScores("multiclass", "cross_entropy", 2.3, "accuracy", 0.1, 100)


def _rule(monitor: str = "val_loss", **kw) -> Comparison:
    return Comparison(monitor, *resolve_comparison("DumbBaselines", monitor, "auto", "auto"), **kw)


def test_a_loss_must_beat_the_baseline_by_the_margin():
    rule = _rule(margin=0.1)
    assert rule.threshold(2.0) == pytest.approx(1.8)
    assert rule.beats(1.7, 2.0) and not rule.beats(1.85, 2.0) and not rule.beats(float("nan"), 2.0)
    acc = _rule("val_acc", margin=0.5)
    assert acc.mode == "max" and acc.threshold(0.6) == pytest.approx(0.8) and acc.beats(0.9, 0.6)


def test_judge_pass_names_when_it_first_beat_the_baseline_and_the_human_baseline():
    rule = _rule(human_baseline=1.0)
    history = [(0, 10, 2.5), (1, 20, 1.5), (2, 30, 0.9)]
    status, message, numbers = judge(rule, SCORES, history, beaten_at=history[1], human_reached_at=history[2])
    assert status == "pass"
    assert message == (
        "val_loss beat the class-prior predictor's cross_entropy loss (2.3) first at epoch 1, step 20 (1.5); "
        "best 0.9; human baseline 1 reached at epoch 2, step 30"
    )
    assert numbers["beaten_step"] == 20 and numbers["best_value"] == 0.9 and numbers["prior_loss"] == 2.3


def test_judge_warns_when_the_metric_never_beat_the_baseline():
    status, message, numbers = judge(_rule(), SCORES, [(0, 10, 2.4), (1, 20, 2.3)])
    assert status == "warn" and message.startswith(
        "val_loss never beat the class-prior predictor's cross_entropy loss: best 2.3 vs 2.3 in 2 validation(s)"
    )
    assert "beaten_step" not in numbers


@pytest.mark.parametrize(
    ("missing", "text"),
    [
        (["val_acc"], "pass `monitor=` one of ['val_acc']"),
        ([], "log it with `self.log('val_loss', ...)`"),
        (None, "validation never ran during training"),
    ],
)
def test_judge_skips_when_the_metric_was_never_compared(missing, text):
    status, message, _ = judge(_rule(), SCORES, [], missing=missing)
    assert status == "skipped" and text in message


def test_reasons_not_to_score_are_skips_naming_the_argument():
    with pytest.raises(Skip, match="`val_dataloaders=`"):
        check_streams(None, None)
    check_streams([1], [2])
    with pytest.raises(Skip, match="compare_to='accuracy' does not fit a regression task"):
        check_compare_to("accuracy", "regression")
    check_compare_to("mae", "regression")
    with pytest.raises(ValueError, match=r"margin=1.0\): pass a fraction"):
        check_arguments("DumbBaselines", "val_loss", None, 1.0, -100)


def test_resolve_task_reads_the_class_count_from_dense_logits():
    assert resolve_task(torch.tensor([0, 1]), torch.zeros(2, 2), "auto", None) == ("multiclass", 2)
    assert resolve_task(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, 17), "auto", None) == (
        "multiclass",
        17,
    )
    with pytest.raises(ValueError, match="task='binary'"):
        resolve_task(torch.tensor([0, 1]), None, "auto", None)


def test_score_baselines_matches_the_core_scores_from_datasets_and_from_loaders():
    yt, yv = torch.tensor([0, 0, 0, 1, 2, 2]), torch.tensor([0, 1, 2, 2])
    train = DataLoader(TensorDataset(torch.zeros(6, 1), yt), batch_size=4)
    val = DataLoader(TensorDataset(torch.zeros(4, 1), yv), batch_size=4)
    expected = dumb_baselines(TargetStats.from_targets(yt, "multiclass", num_classes=3), yv)
    assert score_baselines(train, val, "multiclass", "cross_entropy", 3) == expected
    as_dicts = [{"x": torch.zeros(4, 1), "y": yv}]  # a plain iterable of batches: read batch by batch
    assert score_baselines(train, as_dicts, "multiclass", "cross_entropy", 3, reducer=Reducer()) == expected


def test_token_prior_is_the_unigram_of_the_positions_a_causal_lm_predicts():
    gen = torch.Generator().manual_seed(0)
    ids_t, ids_v = torch.randint(1, 9, (12, 6), generator=gen), torch.randint(1, 9, (8, 6), generator=gen)
    ids_t[:, 4:] = -100  # padding left out of the loss
    vocab = 10
    # by hand: training frequencies of labels[:, 1:] (never-seen ids get half a count), scored on val labels[:, 1:]
    yt = ids_t[:, 1:].reshape(-1)
    counts = torch.bincount(yt[yt != -100], minlength=vocab).double()
    counts[counts == 0] = 0.5
    log_p = (counts / counts.sum()).log()
    expected = float(-log_p[ids_v[:, 1:].reshape(-1)].mean())
    train = DataLoader(
        TensorDataset(ids_t.clamp_min(0), ids_t), batch_size=4
    )  # the fast path (dataset targets)
    val = DataLoader(TensorDataset(ids_v, ids_v), batch_size=4)
    scores = score_baselines(
        train, val, "multiclass", "cross_entropy", vocab, ignore_index=-100, shift=1, tokens=True
    )
    assert scores.loss == pytest.approx(expected) and scores.tokens
    as_dicts = [
        {"input_ids": ids_t[i : i + 4].clamp_min(0), "labels": ids_t[i : i + 4]} for i in range(0, 12, 4)
    ]
    val_dicts = [{"input_ids": ids_v, "labels": ids_v}]
    again = score_baselines(
        as_dicts, val_dicts, "multiclass", "cross_entropy", vocab, ignore_index=-100, shift=1, tokens=True
    )
    assert again.loss == pytest.approx(expected)
    assert "token-prior (unigram)" in _rule().baseline_words(scores)
    unshifted = score_baselines(train, val, "multiclass", "cross_entropy", vocab, ignore_index=-100)
    assert unshifted.loss != pytest.approx(expected) and "class-prior" in _rule().baseline_words(unshifted)


def test_history_state_round_trips_and_task_from_batch_reads_one_batch():
    from lightning_recipe.core.checks.dumb_baselines import (
        history_state,
        load_history,
        task_from_batch,
        validate_choices,
    )

    state = history_state([(0, 10, 2.3), (1, 20, 1.1)], (1, 20, 1.1), None)
    assert load_history(state) == ([(0, 10, 2.3), (1, 20, 1.1)], (1, 20, 1.1), None)
    batch = (torch.randn(8, 4), torch.arange(8) % 3)
    logits = torch.randn(8, 5)
    task, classes, objective = task_from_batch(
        batch, lambda b: (logits, None), "auto", None, None, None, "auto", -100, None
    )
    assert (task, classes, objective) == ("multiclass", 5, None)

    def broken(b):
        raise RuntimeError("forward cannot run")

    task, classes, _ = task_from_batch(batch, broken, "auto", None, None, None, "auto", -100, None)
    assert task == "multiclass" and classes is None  # from the targets alone
    with pytest.raises(Skip, match="yielded no batch"):
        task_from_batch(None, broken, "auto", None, None, None, "auto", -100, None)
    with pytest.raises(ValueError, match=r"DumbBaselines\(mode='low'\)"):
        validate_choices("DumbBaselines", "low", "auto", "auto", "auto", None, None, "auto")
