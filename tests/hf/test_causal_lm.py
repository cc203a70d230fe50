"""Causal language models with zero configuration: token targets, the next-token shift, the leak.

Tiny Hugging Face models built from configs (tests/hf_models.py): GPT-2 with tied embeddings and a
BERT LM head, both shifting ``labels`` inside their loss; the BERT without a causal mask leaks the
future into every position.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lightning_recipe import (
    BatchIndependenceCheck,
    DataInspector,
    DumbBaselines,
    LossAtInitCheck,
    PredictionDynamics,
)
from tests.helpers import make_trainer, png_shape, read_events
from tests.hf_models import VOCAB, HFModule, lm_loader, tiny_bert_lm, tiny_gpt2

P = "recipe/prediction_dynamics/"


def _fit(tmp_path, model, callbacks, **kw):
    trainer = make_trainer(tmp_path, callbacks, **{"max_steps": 1, **kw})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(HFModule(model), lm_loader(), lm_loader(split="val"))
    return trainer


def test_loss_at_init_compares_a_causal_lm_with_the_shifted_cross_entropy(tmp_path):
    # the false fail: a 1000-token vocabulary, the output layer tied to the input embedding;
    # the unshifted cross-entropy is far below ln V, and CE-on-probabilities (~ln V) matched the loss
    check = LossAtInitCheck(on_fail="raise")
    _fit(tmp_path, tiny_gpt2(vocab_size=1000), [check], logger=False)
    finding = check.findings[0]
    assert finding.status == "pass", finding.message
    assert "softmax" not in finding.message and "next-token" in finding.message
    assert finding.numbers["shift"] == 1 and finding.numbers["expected_is"] == "ln 1000"
    assert abs(check.measured - np.log(1000)) < 0.05 * np.log(1000)


def test_healthy_gpt2_gets_verdicts_with_zero_configuration(tmp_path):
    callbacks = [
        DataInspector(), LossAtInitCheck(), BatchIndependenceCheck(), DumbBaselines(),
        PredictionDynamics(every_n_train_steps=8),
    ]  # fmt: skip
    torch.manual_seed(0)
    trainer = _fit(tmp_path, tiny_gpt2(), callbacks, max_steps=-1, max_epochs=2)
    findings = [f for cb in callbacks for f in cb.findings]
    assert not [f for f in findings if f.status != "pass"], [(f.check, f.status, f.message) for f in findings]
    checks = [f.check for f in findings]
    assert checks.count("BatchIndependenceCheck") == 2  # the batch and, inferred, the causal verdict
    causal = [f for f in findings if f.check == "BatchIndependenceCheck"][1]
    assert causal.numbers["causal_dim"] == 1 and "next-token objective" in causal.message
    assert {"LossAtInitCheck", "DumbBaselines", "DataInspector"} <= set(checks)
    # DumbBaselines: the unigram token prior of the shifted training labels, beaten by a wide margin
    baselines = callbacks[3]
    assert baselines.scores.tokens and "token-prior (unigram)" in baselines.findings[0].message
    assert baselines.history[-1][2] < 0.9 * baselines.baseline
    # DataInspector: no missing-class warning on the vocabulary; token statistics instead
    summary = [f for f in findings if f.check == "DataInspector"][-1]
    assert "tokens:" in summary.message and summary.numbers["train"]["sequence_length"] == 16
    # PredictionDynamics: p(true next token) rises; a large vocabulary would get the top-k view
    dynamics = callbacks[4]
    assert dynamics._objective is not None and dynamics._objective.shift == 1
    ev = read_events(trainer.logger)
    probs = [v for _, v in ev.scalars(P + "mean_true_prob")]
    assert len(probs) == 3 and probs[-1] > 1.4 * probs[0]  # ~1/64 at init
    _, width, height, png = ev.images(P + "predictions")[-1]
    assert png_shape(png)[:2] == (height, width)


def test_prediction_dynamics_shows_top_tokens_for_a_large_vocabulary(tmp_path):
    dynamics = PredictionDynamics(num_samples=8, every_n_train_steps=1)
    trainer = _fit(tmp_path, tiny_gpt2(vocab_size=500), [dynamics], max_steps=2)
    assert dynamics.findings == [] and dynamics.steps == [0, 1, 2]
    ev = read_events(trainer.logger)
    _, width, height, _ = ev.images(P + "predictions")[-1]
    assert width == 600 and height < 400  # 8 rows of 5 tokens, not a 500-column heatmap
    values = np.asarray(dynamics._trace.values)
    assert values.shape == (3, 8) and np.isfinite(values).all()


@pytest.mark.parametrize(
    "make, status",
    [
        (lambda: tiny_bert_lm(causal=False), "fail"),
        (lambda: tiny_bert_lm(causal=True), "pass"),
        (tiny_gpt2, "pass"),
    ],
    ids=["bert-no-causal-mask", "bert-decoder", "gpt2"],
)
def test_batch_independence_checks_causality_of_next_token_objectives(make, status):
    check = BatchIndependenceCheck()
    batch = next(iter(lm_loader()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check.check(HFModule(make()), batch)
    assert [f.status for f in check.findings] == ["pass", status]  # one finding per verdict
    causal = check.findings[1]
    if status == "fail":
        assert "causal leak along dim 1" in causal.message and "word_embeddings" in causal.message
        assert causal.numbers["first_leak"][1] > causal.numbers["first_leak"][0]  # a later position leaks in


def test_batch_independence_records_one_skipped_finding_when_the_model_cannot_be_charted():
    class Broken(HFModule):
        def forward(self, **batch):
            raise RuntimeError("no")

    check = BatchIndependenceCheck(causal_dim=1)
    check.check(Broken(tiny_gpt2()), next(iter(lm_loader())))
    assert [f.status for f in check.findings] == ["skipped"]
    auto = BatchIndependenceCheck()
    auto.check(Broken(tiny_gpt2()), next(iter(lm_loader())))
    assert [f.status for f in auto.findings] == ["skipped"]


def test_token_classification_without_shift_stays_unshifted(tmp_path):
    # targets already one position ahead (nanoGPT's batches): nothing to shift, the model is not causal by name
    ids = next(iter(lm_loader(n=32)))["input_ids"]
    from lightning_recipe.core.tasks import infer_sequence_objective

    labels = torch.cat([ids[:, 1:], torch.full((ids.shape[0], 1), -100)], 1)
    found = infer_sequence_objective(labels, batch={"input_ids": ids, "labels": labels}, module=tiny_gpt2())
    assert found is not None and found.shift == 0


def test_batch_independence_checks_a_causal_lm_fed_token_ids_only():
    class IdsOnly(HFModule):  # the user computes the loss from input_ids; no labels in the batch
        def forward(self, input_ids):
            return self.model(input_ids=input_ids).logits

    check = BatchIndependenceCheck()
    ids = next(iter(lm_loader()))["input_ids"]
    check.check(IdsOnly(tiny_gpt2()), {"input_ids": ids})
    assert [f.status for f in check.findings] == ["pass", "pass"]
    assert "GPT2LMHeadModel is a causal language model" in check.findings[1].message


def test_overfit_batch_forgives_the_first_token_after_a_bos_that_no_model_can_memorise(tmp_path):
    """Every sequence starts with the same BOS: the token after it is predicted from that one
    context, whatever the example, so the loss of one batch cannot reach 0; the target allows the
    entropy of those first tokens (and only that)."""
    from lightning_recipe.callbacks import OverfitBatchCheck

    check = OverfitBatchCheck()
    trainer = make_trainer(tmp_path, [check], max_steps=1, limit_val_batches=0)
    trainer.fit(HFModule(tiny_gpt2()), lm_loader(bos=VOCAB - 1))
    [finding] = check.findings
    assert finding.status == "pass", finding.message
    # 8 sequences, 7-8 distinct first tokens: about ln(8) spread over the ~12 loss positions of each
    assert 0.05 < finding.numbers["irreducible_loss"] < 0.3
    assert "cannot be memorised" in finding.message
