"""FixedSeed: the recipe's "fix random seed"."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import RecipeCallback
from lightning_recipe.core.fingerprint import fingerprint

__all__ = ["FixedSeed"]


class FixedSeed(RecipeCallback):
    """Fix the random seed so that running the code twice gives the same outcome.

    Recipe, "fix random seed": *"Always use a fixed random seed to guarantee that when you run the
    code twice you will get the same outcome."* Seeds Python, NumPy and torch (CPU and CUDA) when
    it is **constructed**, so a model built *after* it is initialised from the seed: create
    ``FixedSeed`` before the model. Seeds again at ``setup`` so data order and dropout start from
    the seed too. Dataloader workers get seeds derived from it (``workers=True``).

    TensorBoard: ``recipe/seed/fingerprint`` (Text tab) holds the seed and short hashes of the
    initial weights and of the first training batch, so two runs can be compared at a glance.

    Args:
        seed: the seed.
        workers: also seed dataloader worker processes (Lightning's ``seed_everything(workers=True)``).
        deterministic: use deterministic algorithms (``torch.use_deterministic_algorithms``, warning
            only where none exists); the previous setting is restored at teardown.
        log_fingerprints: log the fingerprints of the initial weights and of the first batch.

    Attributes:
        findings: one ``pass`` finding with the seed and the fingerprints.
        weights_fingerprint: hash of the module's state dict at the start of training.
        batch_fingerprint: hash of the first training batch (rank zero's under DDP).

    Example:
        >>> import torch
        >>> seed = FixedSeed(42)                     # before the model
        >>> a = torch.nn.Linear(2, 2).weight.clone()
        >>> seed = FixedSeed(42)
        >>> torch.equal(a, torch.nn.Linear(2, 2).weight)
        True

    See the README section "Fix the random seed: `FixedSeed`".
    """

    def __init__(
        self,
        seed: int = 1337,
        workers: bool = True,
        deterministic: bool = False,
        log_fingerprints: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"FixedSeed(seed={seed!r}): pass an integer seed.")
        max_seed = 2**32 - 1
        if not 0 <= seed <= max_seed:
            raise ValueError(f"FixedSeed(seed={seed!r}): pass a seed between 0 and {max_seed}.")
        self.seed = seed
        self.workers = bool(workers)
        self.deterministic = bool(deterministic)
        self.log_fingerprints = bool(log_fingerprints)
        self.weights_fingerprint: str | None = None
        self.batch_fingerprint: str | None = None
        self._checkpoint_seed: int | None = None
        self._previous_deterministic: tuple[bool, bool] | None = None
        self._previous_cublas: str | None = None
        self._seed_all()

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self.weights_fingerprint = self.batch_fingerprint = None
        self._seed_all()
        if self.deterministic and self._previous_deterministic is None:
            self._enable_determinism()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if self._previous_deterministic is not None:
            self._restore_determinism(self._previous_deterministic)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.is_fitting(trainer):
            return
        self._fingerprint_weights(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.is_fitting(trainer):
            return
        if self.batch_fingerprint is None:
            self._fingerprint_batch(trainer, batch)
        self.retire_hook("on_train_batch_start")  # the first batch is fingerprinted: no more calls

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "weights_fingerprint": self.weights_fingerprint,
            "batch_fingerprint": self.batch_fingerprint,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._checkpoint_seed = state_dict.get("seed")
        self.weights_fingerprint = state_dict.get("weights_fingerprint")
        self.batch_fingerprint = state_dict.get("batch_fingerprint")

    # ------------------------------------------------------------------ private helpers
    def _seed_all(self) -> None:
        seed_everything(self.seed, workers=self.workers, verbose=False)

    def _enable_determinism(self) -> None:
        """Turn on deterministic algorithms for the run, keeping the previous setting to restore."""
        self._previous_deterministic = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        self._previous_cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)

    def _restore_determinism(self, previous: tuple[bool, bool]) -> None:
        enabled, warn_only = previous
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        if self._previous_cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = self._previous_cublas
        self._previous_deterministic = None

    def _fingerprint_weights(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The initial weights' hash (kept from the checkpoint on resume); warn if the seed changed."""
        if self._checkpoint_seed is not None and self._checkpoint_seed != self.seed:
            self.warn(
                f"FixedSeed: resumed from a checkpoint seeded with {self._checkpoint_seed}, but this run "
                f"uses seed={self.seed}; the two runs are not comparable."
            )
        if self.weights_fingerprint is None or trainer.global_step == 0:
            self.weights_fingerprint = fingerprint(pl_module.state_dict())

    def _fingerprint_batch(self, trainer: Trainer, batch: Any) -> None:
        """Hash the first batch; record the seed and both fingerprints; log them as a table."""
        self.batch_fingerprint = fingerprint(batch)
        numbers = {
            "seed": self.seed,
            "weights_fingerprint": self.weights_fingerprint,
            "batch_fingerprint": self.batch_fingerprint,
            "deterministic": self.deterministic,
        }
        self.record(
            trainer,
            "pass",
            f"seed {self.seed}; initial weights {self.weights_fingerprint}, first batch {self.batch_fingerprint} "
            "(equal fingerprints across runs mean the same start)",
            numbers,
        )
        if self.log_fingerprints:
            text = (
                "| seed | initial weights | first batch | deterministic |\n| --- | --- | --- | --- |\n"
                f"| {self.seed} | `{self.weights_fingerprint}` | `{self.batch_fingerprint}` | {self.deterministic} |"
            )
            writer.log_text(trainer, "recipe/seed/fingerprint", text, trainer.global_step)
