"""Test configuration: quiet, headless, and every test leaves global state as it found it."""

from __future__ import annotations

import logging
import os
import random
import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Restore RNG states, deterministic flags, env vars and figure rendering after each test."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    det, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    env = dict(os.environ)
    yield
    from lightning_recipe import writer as recipe_logging

    recipe_logging.drain()
    random.setstate(py)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    os.environ.clear()
    os.environ.update(env)


@pytest.fixture(autouse=True)
def _quiet_lightning():
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LightningModule.*has parameters that were not used.*")
        yield
