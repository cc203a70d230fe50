"""How a model reads its labels: padding in an encoder-decoder batch, labels shifted twice."""

from __future__ import annotations

import warnings

import pytest

from lightning_recipe.callbacks import BatchInspector
from tests.helpers import make_trainer
from tests.hf_models import HFModule, lm_loader, seq2seq_loader, tiny_gpt2, tiny_t5


def _inspect(tmp_path, model, loader) -> list[tuple[str, str, str]]:
    check = BatchInspector()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_trainer(tmp_path, [check], max_steps=1, limit_val_batches=0).fit(HFModule(model), loader)
    return [(f.status, str(f.numbers.get("code", "")), f.message) for f in check.findings]


def test_t5_labels_padded_with_minus_100_are_clean_whatever_the_encoder_mask(tmp_path):
    """The labels are the decoder's sequence: the encoder's attention_mask (here of the same shape,
    both padded to one length) says nothing about their padding."""
    loader = seq2seq_loader()
    batch = next(iter(loader))
    assert batch["labels"].shape == batch["attention_mask"].shape  # the shapes that misled it
    assert [s for s, _, _ in _inspect(tmp_path, tiny_t5(), loader)] == ["pass"]


def test_t5_labels_padded_with_the_pad_id_train_on_padding(tmp_path):
    [(status, _, message)] = _inspect(tmp_path, tiny_t5(), seq2seq_loader(pad_in_loss=True))
    assert status == "warn" and message.startswith("the loss trains on padding")
    assert "labels == pad_token_id 0 after the end of each target sequence" in message


@pytest.mark.parametrize("pre_shifted", [False, True], ids=["labels_are_the_inputs", "shifted_by_the_data"])
def test_gpt2_labels_shifted_by_the_data_and_again_by_the_model_warn(tmp_path, pre_shifted):
    findings = _inspect(tmp_path, tiny_gpt2(), lm_loader(pre_shifted=pre_shifted))
    if not pre_shifted:
        assert [s for s, _, _ in findings] == ["pass"], findings
        return
    [(status, _, message)] = findings
    assert status == "warn" and "GPT2LMHeadModel shifts them by one again" in message


def test_label_convention_trusts_the_config_over_the_class_name():
    from torch import nn

    from lightning_recipe.core.tasks import label_convention
    from tests.hf_models import transformers

    t5 = label_convention(tiny_t5())
    assert t5.encoder_decoder and t5.pad_id == 0 and t5.shifts_inside is None
    assert label_convention(tiny_gpt2()).shifts_inside == "GPT2LMHeadModel"

    class VisionLanguageForConditionalGeneration(nn.Module):  # decoder-only, as LLaVA is
        def __init__(self) -> None:
            super().__init__()
            self.config = transformers.PretrainedConfig(vocab_size=8, is_encoder_decoder=False)

    assert not label_convention(VisionLanguageForConditionalGeneration()).encoder_decoder
    # a pad id that is also the EOS ends every healthy label row: it does not mark padding
    torch_t5 = tiny_t5()
    torch_t5.config.pad_token_id = torch_t5.config.eos_token_id = 1
    assert label_convention(torch_t5).pad_id is None
