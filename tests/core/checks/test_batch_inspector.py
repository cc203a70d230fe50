"""The BatchInspector's check module without a Trainer: findings of a batch and the text it logs."""

from __future__ import annotations

import pytest
import torch

from lightning_recipe.core.checks.batch_inspector import (
    batch_findings,
    denormalized,
    grid_title,
    label_text,
    naming,
    padding_in_loss,
    rows_table,
    sample_labels,
    stats_table,
    tokens_text,
)
from lightning_recipe.core.inputs import input_stats


def _z(n: int = 64, f: int = 6) -> torch.Tensor:
    return torch.randn(n, f, generator=torch.Generator().manual_seed(0))


def test_raw_inputs_warn_once_and_a_clean_first_batch_passes():
    seen: set[str] = set()
    [(status, message, numbers)] = batch_findings(input_stats(_z() * 255, "tabular"), seen, first=True)
    assert status == "warn" and message.startswith("inputs are not normalised") and numbers["std"] > 50
    assert numbers["layout"] == "tabular" and numbers["shape"] == [64, 6]
    assert batch_findings(input_stats(_z() * 255, "tabular"), seen, first=False) == []
    [(status, message, _)] = batch_findings(input_stats(_z(), "tabular"), set(), first=True)
    assert status == "pass" and message.startswith("tabular inputs (64, 6) (float32): mean ")
    assert message.endswith("; no NaN/Inf")
    assert batch_findings(input_stats(_z(), "tabular"), set(), first=False) == []


def test_nan_fails_and_a_double_normalised_batch_warns_nearly_constant():
    x = _z()
    x[3, 1] = float("nan")
    assert [s for s, _, _ in batch_findings(input_stats(x, "tabular"), set(), first=True)] == ["fail"]
    [(status, message, _)] = batch_findings(
        input_stats(torch.rand(8, 1, 8, 8) / 255, "image"), set(), first=True
    )
    assert status == "warn" and "nearly constant" in message
    assert (
        batch_findings(input_stats(torch.rand(8, 1, 8, 8) / 255, "image"), set(), True, constant_std=1e-4)
        != []
    )


def test_thresholds_are_honoured():
    stats = input_stats(_z() * 3, "tabular")
    assert [s for s, _, _ in batch_findings(stats, set(), first=True)] == ["pass"]
    assert [s for s, _, _ in batch_findings(stats, set(), first=True, scale=1.0)] == ["warn"]


def test_text_cards():
    stats = input_stats(torch.rand(4, 3, 8, 8), "image")
    table = stats_table(stats)
    assert table.startswith("**image** batch (4, 3, 8, 8) `float32`: mean ")
    assert "| channel | mean | std | min | max |" in table and len(table.splitlines()) == 2 + 2 + 3
    rows = rows_table(_z(20, 3), ["a"] * 20)
    assert rows.splitlines()[0] == "| # | label | x0 | x1 | x2 |" and "(4 more rows not shown)" in rows
    assert rows_table(_z(2, 2), None).splitlines()[0] == "| # | x0 | x1 |"
    ids = torch.arange(12).reshape(2, 6)
    assert tokens_text(ids, ["1", "0"], None) == "0. **[1]** `0 1 2 3 4 5`\n\n1. **[0]** `6 7 8 9 10 11`"
    assert (
        tokens_text(ids, None, lambda t: "-".join(map(str, t.tolist())))
        == "0. 0-1-2-3-4-5\n\n1. 6-7-8-9-10-11"
    )
    with pytest.raises(RuntimeError, match=r"BatchInspector\(decode=...\): the callable failed on token ids"):
        tokens_text(ids, None, lambda t: 1 / 0)
    assert grid_title(stats, 3, True).startswith("step 3: (4, 3, 8, 8) float32, mean ")
    assert grid_title(stats, 3, True).endswith(" (denormalized)") and "denormalized" not in grid_title(
        stats, 3, False
    )


def test_denormalize_runs_on_a_copy_and_names_itself_when_it_fails():
    sample = torch.zeros(2, 1, 4, 4)
    assert torch.equal(denormalized(sample, lambda x: x.add_(1)), torch.ones(2, 1, 4, 4))
    assert torch.equal(sample, torch.zeros(2, 1, 4, 4)) and denormalized(sample, None) is not None
    with pytest.raises(
        RuntimeError, match=r"BatchInspector\(denormalize=...\): the callable failed on a CPU tensor"
    ):
        denormalized(sample, lambda x: 1 / 0)


def test_labels_and_reasons():
    assert sample_labels(torch.tensor([1, 0, 2]), 2, ["a", "b", "c"]) == ["b", "a"]
    assert sample_labels(torch.tensor([1]), 2) is None and sample_labels(["x", "y"], 2) is None
    assert label_text(torch.tensor([0.5, 0.25, 1.5, 2.0])) == "0.5,0.25,1.5…"
    assert label_text(torch.zeros(3)) == "none" and label_text(torch.tensor(float("inf"))) == "inf"
    assert naming(ValueError("found no inputs."), "input_key") == "found no inputs; pass `input_key=`."
    assert naming(ValueError("pass `input_key=`."), "input_key") == "pass `input_key=`."


# ---------------------------------------------------------------------- padding in the loss
def _lm_batch(pad_label: int) -> dict[str, torch.Tensor]:
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]])
    mask = (ids != 0).long()
    labels = ids.clone()
    labels[mask == 0] = pad_label
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_padding_in_loss_warns_with_the_fraction_of_loss_positions():
    status, message, numbers = padding_in_loss(_lm_batch(0), _lm_batch(0)["labels"])
    assert status == "warn"
    assert message.startswith("the loss trains on padding: 3 of the 8 loss positions (37.5%) are padding")
    assert numbers["padding_fraction"] == 3 / 8 and numbers["mask_key"] == "attention_mask"
    assert padding_in_loss(_lm_batch(-100), _lm_batch(-100)["labels"]) is None


def test_padding_in_loss_honours_another_ignore_index():
    batch = _lm_batch(0)
    assert padding_in_loss(batch, batch["labels"], ignore_index=0) is None
    status, message, _ = padding_in_loss(_lm_batch(-100), _lm_batch(-100)["labels"], ignore_index=0)
    assert status == "warn" and "labels != 0" in message  # -100 is a real label to a loss ignoring 0


def test_padding_in_loss_reads_the_decoder_mask_of_an_encoder_decoder_batch():
    batch = _lm_batch(0)
    batch["decoder_attention_mask"] = torch.ones_like(batch["attention_mask"])
    assert padding_in_loss(batch, batch["labels"]) is None  # the encoder's padding is not the labels'
    batch["decoder_attention_mask"] = batch.pop("attention_mask")
    assert padding_in_loss(batch, batch["labels"])[2]["mask_key"] == "decoder_attention_mask"


def test_padding_in_loss_applies_only_to_token_labels_shaped_like_the_mask():
    batch = _lm_batch(0)
    assert padding_in_loss(batch, torch.tensor([0, 1])) is None  # sequence classification
    assert padding_in_loss(batch, batch["labels"].float()) is None
    assert padding_in_loss((batch["input_ids"], batch["labels"]), batch["labels"]) is None
