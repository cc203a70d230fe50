"""core.tasks.infer_sequence_objective: token targets and the causal-LM shift, without Lightning."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_recipe.core.checks.prediction_dynamics import line_up, predictions_for, top_tokens
from lightning_recipe.core.tasks import (
    SequenceObjective,
    infer_sequence_objective,
    infer_task,
    is_token_targets,
)

IDS = torch.tensor([[3, 4, 5, 6, 7], [9, 10, 11, 0, 0]])
LABELS = torch.where(IDS == 0, torch.full_like(IDS, -100), IDS)


class Named(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        if config is not None:
            self.config = config


def _class(name: str) -> nn.Module:
    return type(name, (Named,), {})()


def test_is_token_targets():
    assert is_token_targets(LABELS) and is_token_targets(LABELS, torch.zeros(2, 5, 12))
    assert not is_token_targets(LABELS, torch.zeros(2, 12))  # one prediction per sample
    assert not is_token_targets(LABELS.float()) and not is_token_targets(torch.tensor([1, 2]))
    assert infer_sequence_objective(torch.tensor([1, 2]), torch.zeros(2, 3)) is None


def test_the_loss_decides_the_alignment():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 12) * 3
    shifted = F.cross_entropy(logits[:, :-1].reshape(-1, 12), LABELS[:, 1:].reshape(-1), ignore_index=-100)
    same = F.cross_entropy(logits.reshape(-1, 12), LABELS.reshape(-1), ignore_index=-100)
    assert infer_sequence_objective(LABELS, logits, loss=shifted).shift == 1
    assert infer_sequence_objective(LABELS, logits, loss=same).shift == 0
    # the loss wins over every other rule: a causal class name, labels equal to the inputs
    found = infer_sequence_objective(
        LABELS, logits, batch={"input_ids": IDS, "labels": LABELS}, module=_class("FooForCausalLM"), loss=same
    )
    assert found.shift == 0 and "same position" in found.reason and found.vocab == 12


def test_batch_config_and_class_rules():
    batch = {"input_ids": IDS, "labels": LABELS}
    # labels equal to the inputs: shifted only when the model computes its own loss (it shifts inside)
    assert infer_sequence_objective(LABELS, batch=batch, computes_loss=True).shift == 1
    assert infer_sequence_objective(LABELS, batch=batch, computes_loss=False).shift == 0
    # targets already one position ahead of the inputs (nanoGPT's batches): never shifted again
    ahead = torch.cat([IDS[:, 1:], torch.full((2, 1), -100)], 1)
    ahead[ahead == 0] = -100
    got = infer_sequence_objective(
        ahead, batch=(IDS, ahead), module=_class("GPT2LMHeadModel"), computes_loss=True
    )
    assert got.shift == 0 and "ahead" in got.reason
    # config and class names
    decoder = Named(SimpleNamespace(vocab_size=50, is_decoder=True))
    assert infer_sequence_objective(LABELS, module=decoder).shift == 1
    assert infer_sequence_objective(LABELS, module=decoder).vocab == 50
    seq2seq = Named(SimpleNamespace(vocab_size=50, is_decoder=False, is_encoder_decoder=True))
    assert infer_sequence_objective(LABELS, batch=batch, module=seq2seq, computes_loss=True).shift == 0
    for name, shift in (
        ("LlamaForCausalLM", 1),
        ("BertLMHeadModel", 1),
        ("T5ForConditionalGeneration", 0),
        ("Tagger", 0),
    ):
        assert infer_sequence_objective(LABELS, module=_class(name)).shift == shift, name


def test_shift_argument_overrides_and_is_validated():
    assert infer_sequence_objective(LABELS, module=_class("GPT2LMHeadModel"), shift=0).shift == 0
    with pytest.raises(ValueError, match=r"infer_sequence_objective\(shift=-1\)"):
        infer_sequence_objective(LABELS, shift=-1)


def test_align_and_next_token_probability():
    objective = SequenceObjective(shift=1, vocab=12)
    logits = torch.full((2, 5, 12), -10.0)
    for i in range(2):
        for t in range(4):
            nxt = int(LABELS[i, t + 1])
            if nxt >= 0:
                logits[i, t, nxt] = 10.0  # a perfect next-token predictor
    out, y, view = line_up(objective, logits, LABELS)
    assert out.shape == (2, 4, 12) and y.shape == (2, 4) and view is None  # 12 classes: the heatmap stays
    value, _, _ = predictions_for("multiclass", out, y)
    assert value.min() > 0.99
    unshifted, _, _ = predictions_for("multiclass", logits, LABELS)
    assert unshifted.max() < 0.05  # the off-by-one the issue saw


def test_top_tokens_view_for_a_large_vocabulary():
    logits = torch.zeros(3, 6, 40)
    logits[..., 17] = 4.0
    targets = torch.tensor([[17] * 6, [1] * 6, [-100] * 6])
    _, _, view = line_up(SequenceObjective(shift=0, vocab=40), logits, targets)
    assert view is not None and view["rows"] == ["#0 t=2", "#1 t=2"]  # sample 2 has no labelled position
    assert view["ids"].shape == (2, 5) and int(view["ids"][0, 0]) == 17
    assert view["rank"].tolist() == [1, 2] and view["p_true"][0] > 0.5
    assert top_tokens(logits, torch.full((3, 6), -100)) is None


def test_infer_task_names_integer_targets_without_outputs():
    with pytest.raises(ValueError, match=r"integer targets 1\.\.99 of shape \(2, 3\)") as err:
        infer_task(torch.tensor([[1, 50, 99], [2, 3, 4]]))
    assert "0/1" not in str(err.value)
    with pytest.raises(ValueError, match="0/1 targets"):
        infer_task(torch.tensor([[0, 1], [1, 1]]))
