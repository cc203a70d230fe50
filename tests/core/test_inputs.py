"""Unit tests for lightning_recipe.core.inputs (no Trainer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_recipe.core.inputs import detect_layout, diagnose_inputs, input_stats, markdown_table
from tests.helpers import breast_cancer_arrays, digits_arrays


@pytest.mark.parametrize(
    ("x", "layout"),
    [
        (torch.zeros(4, 3, 8, 8), "image"),
        (torch.zeros(4, 1, 8, 8), "image"),
        (torch.zeros(4, 28, 28), "image"),
        (torch.zeros(4, 30), "tabular"),
        (torch.zeros(4, 12, dtype=torch.long), "tokens"),
        (torch.zeros(4, 3, 8, 8, dtype=torch.uint8), "image"),
        (torch.zeros(4, 10, 16), "image"),
        (torch.zeros(4, 2, 10), "other"),
        (torch.zeros(4, 5, 8, 8), "other"),
    ],
)
def test_detect_layout(x, layout):
    assert detect_layout(x) == layout


def test_per_channel_stats_match_numpy():
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0])[:, None, None] + 5
    s = input_stats(x)
    ref = x.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(s.mean, ref.mean(1))
    np.testing.assert_allclose(s.std, ref.std(1))
    np.testing.assert_allclose(s.min, ref.min(1))
    np.testing.assert_allclose(s.max, ref.max(1))
    assert s.overall_mean == pytest.approx(float(x.mean()))


def test_stats_ignore_nan_and_count_them():
    x = torch.tensor([[1.0, float("nan")], [3.0, float("inf")], [5.0, 2.0]])
    s = input_stats(x, "tabular")
    assert (s.nan, s.inf) == (1, 1)
    assert s.mean.tolist() == [3.0, 2.0]
    assert s.max.tolist() == [5.0, 2.0]


def test_raw_pixels_are_not_normalised():
    x = torch.randint(0, 256, (32, 3, 16, 16)).float()
    codes = [d.code for d in diagnose_inputs(input_stats(x))]
    assert codes == ["not_normalised"]


def test_raw_digits_0_to_16_are_not_normalised():
    x, _ = digits_arrays()
    codes = [d.code for d in diagnose_inputs(input_stats(torch.tensor(x[:64] * 16)))]
    assert codes == ["not_normalised"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.tensor(digits_arrays()[0][:64]),  # digits /16 in [0, 1]
        lambda: torch.rand(32, 3, 16, 16),  # [0, 1] images
        lambda: torch.tensor(breast_cancer_arrays()[0][:64]),  # z-scored, reaching beyond +-3
        lambda: (torch.randn(256, 10) * 1.5).clamp(-6, 6),
        lambda: torch.randint(0, 30000, (8, 64)),  # token ids: never judged for scale
    ],
)
def test_healthy_inputs_are_silent(make):
    x = make()
    assert diagnose_inputs(input_stats(x)) == []


def test_zscored_input_reaching_beyond_three_is_healthy():
    x = torch.tensor(breast_cancer_arrays()[0])
    assert float(x.abs().max()) > 3
    assert diagnose_inputs(input_stats(x)) == []


def test_double_normalisation_is_near_constant():
    x = torch.tensor(digits_arrays()[0][:64]) / 255.0
    d = diagnose_inputs(input_stats(x))
    assert [e.code for e in d] == ["near_constant"]
    assert "normalised twice" in d[0].message


def test_nan_is_a_fail():
    x = torch.randn(8, 4)
    x[2, 1] = math.nan
    d = diagnose_inputs(input_stats(x))
    assert d[0].code == "nan_inf" and d[0].status == "fail"
    assert "1 NaN" in d[0].message


def test_one_unscaled_feature_is_named():
    x = torch.randn(64, 5)
    x[:, 3] = x[:, 3] * 100 + 600
    d = diagnose_inputs(input_stats(x, "tabular"))
    assert d[0].code == "not_normalised"
    assert "feature 3" in d[0].message and "1 of 5 features" in d[0].message


def test_markdown_table_is_bounded():
    text = markdown_table(["a"] * 20, [[1.0] * 20] * 30, max_rows=4, max_cols=3)
    lines = text.splitlines()
    assert lines[0] == "| a | a | a | … |"
    assert sum(1 for line in lines if line.startswith("| 1")) == 4
    assert "26 more rows" in text
