"""InputIndependentBaseline on a model that starts slowly: a 1-D convolution over digits as sequences.

After the first round its validation loss is barely below the prior's (about 1%), but further below
the zeroed copy's than a round before: the gap is growing, so it trains more rounds and passes. The
same model with shuffled labels has no growing gap and still fails.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from lightning_recipe import InputIndependentBaseline
from tests.helpers import LitModel, digits_arrays, loader, make_trainer


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1))


def _loaders(shuffle_labels: bool):
    x, y = digits_arrays()
    x = x.reshape(len(x), 64)
    idx = np.random.default_rng(0).permutation(len(x))
    if shuffle_labels:
        y = y[np.random.default_rng(1).permutation(len(y))]
    tr, va = idx[:1437], idx[1437:]
    return loader(x[tr], y[tr], shuffle=True), loader(x[va], y[va], batch_size=64)


def _check(tmp_path, shuffle_labels: bool):
    torch.manual_seed(0)
    check = InputIndependentBaseline()
    trainer = make_trainer(tmp_path, [check], max_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(LitModel(Conv1dNet(), lr=3e-3), *_loaders(shuffle_labels))
    [finding] = check.findings
    return finding


def test_a_slow_starter_trains_more_rounds_and_passes_while_shuffled_labels_fail(tmp_path):
    healthy = _check(tmp_path / "healthy", shuffle_labels=False)
    assert healthy.status == "pass", healthy.message
    assert healthy.numbers["steps"] > 100  # the first round alone would have failed it
    assert healthy.numbers["relative_gap"] > 0.1  # margin is 0.05

    bug = _check(tmp_path / "bug", shuffle_labels=True)
    assert bug.status == "fail", bug.message
    assert bug.numbers["relative_gap"] < 0.02
