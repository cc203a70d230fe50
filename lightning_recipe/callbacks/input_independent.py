"""InputIndependentBaseline: the recipe's "input-independent baseline"."""

from __future__ import annotations

import math
import time
from dataclasses import fields, replace
from functools import partial
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks._shadow import ShadowTrainer, replay_problem
from lightning_recipe.callbacks.base import OnFail, RecipeCallback
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.budget import check_one_time, shared_budget
from lightning_recipe.core.checks.input_independent import (
    NO_VALIDATION_DATA,
    BaselineConfig,
    BaselineRounds,
    CopyPair,
    RoundPlan,
    cannot_replay_message,
    infer_integer_fill,
    resumed_message,
    run_rounds,
    validate_arguments,
    zero_inputs,
)
from lightning_recipe.core.state import preserved_state
from lightning_recipe.plots.input_independent import curves_figure

__all__ = ["InputIndependentBaseline"]

_TAG = "recipe/input_independent"


class InputIndependentBaseline(RecipeCallback):
    """Check that the model extracts information from its input: train a copy on zeroed inputs.

    Recipe, "input-independent baseline": *"Train an input-independent baseline (e.g. easiest is
    to just set all your inputs to zero). This should perform worse than when you actually plug in
    your data without zeroing it out. Does it?"* Once, before the first training step, two copies
    train with the user's own ``training_step`` and optimizer on the same batches, one with its
    inputs set to ``fill`` (token ids to ``integer_fill``; masks, positions and segments kept), and
    are scored on held-out validation batches after every ``steps`` steps. ``pass``: the real copy
    is ``margin`` lower; ``fail``: both score the same, or the real copy stopped learning without
    beating the zeroed one; ``skipped``: inconclusive, or the message says what to pass. The real
    model, optimizer, data order and random state are untouched. TensorBoard, at step 0:
    ``recipe/input_independent/{real_val_loss,zeroed_val_loss,relative_gap}``, figure ``.../curves``.

    Args:
        steps: training steps per round, for each copy.
        max_steps: training steps per copy before giving up as inconclusive (default 500; with
            ``one_time``, at most 500 within the budget; an explicit value is kept).
        val_batches: validation batches the copies are scored on (the first ones).
        margin: how much lower (relative) the real copy's validation loss must be.
        input_key: where the inputs are in a batch; inferred by default. Only these are zeroed.
        target_key: where the targets are; inferred by default. They are never zeroed.
        fill: the value floating-point inputs are set to.
        integer_fill: the id token inputs are set to. ``None`` infers it: the padding id the batch
            shows (where ``attention_mask == 0``), else ``pad_token_id`` / an embedding's
            ``padding_idx``, else 0 (the finding says which).
        log_figure: log the ``curves`` figure.
        one_time: the share of the planned run the one-time checks may take together (README "Cost"):
            scored four times a round (once more where the gap nears ``margin``), the copies stop at a
            clear ``pass``, and after a round where the budget ends. ``None`` (default alone): no budget.
        on_fail: ``"warn"`` or ``"raise"`` (raises ``RecipeCheckError`` before the first training step).

    Attributes:
        findings: one finding (``pass``, ``fail`` or ``skipped``).
        real_val_loss: validation loss of the copy trained on real inputs (``None`` before the check).
        zeroed_val_loss: validation loss of the copy trained on zeroed inputs.
        integer_fill_used: the id token inputs were set to and where it came from (``None``: no token inputs).
        budget_steps: the steps per copy the one-time budget allowed (``None`` without ``one_time``).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning_recipe.demos import TinyClassifier, tiny_trainer
        >>> x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
        >>> data = DataLoader(TensorDataset(x, x[:, :3].argmax(dim=1)), batch_size=32)  # label in the input
        >>> check = InputIndependentBaseline(steps=40)
        >>> trainer = tiny_trainer(max_steps=1, limit_val_batches=1, callbacks=[check],
        ...                        default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(TinyClassifier(in_features=4, num_classes=3, lr=0.5), data, data)
        >>> check.findings[0].status, check.real_val_loss < check.zeroed_val_loss
        ('pass', True)

    See the README section "`InputIndependentBaseline`".
    """

    def __init__(
        self,
        steps: int = 100,
        max_steps: int | None = None,
        val_batches: int = 8,
        margin: float = 0.05,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        fill: float = 0.0,
        integer_fill: int | None = None,
        log_figure: bool = True,
        one_time: float | None = None,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        owner = self.name
        self.one_time_share = check_one_time(owner, one_time)
        self._fixed_max = max_steps is not None
        max_steps = validate_arguments(owner, steps, max_steps, val_batches, margin, fill, integer_fill)
        self.validate_keys(owner, input_key, target_key)
        self.steps, self.max_steps, self.val_batches, self.margin = (
            steps,
            max_steps,
            val_batches,
            float(margin),
        )
        self.input_key, self.target_key, self.fill = input_key, target_key, float(fill)
        self.integer_fill, self.log_figure = integer_fill, bool(log_figure)
        self.real_val_loss: float | None = None
        self.zeroed_val_loss: float | None = None
        self.integer_fill_used: tuple[int, str] | None = None
        self.budget_steps: int | None = None  # steps per copy the one-time budget allowed
        self._fill: tuple[int, str] | None = None
        self._done = False
        self._stored: dict[str, Any] | None = None

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer):
            return
        if self._done:
            self._replay(trainer)
            return
        self._done = True
        if trainer.global_step > 0:
            self._finish(trainer, "skipped", resumed_message(trainer.global_step))
            return
        self._check(trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"done": self._done, "finding": self._stored}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = bool(state_dict.get("done", False))
        self._stored = state_dict.get("finding")

    @property
    def _config(self) -> BaselineConfig:
        config = BaselineConfig(**{f.name: getattr(self, f.name) for f in fields(BaselineConfig)})
        if self.integer_fill is None and self._fill is not None:
            config = replace(config, integer_fill=self._fill[0])
        return config

    def _zeroed(self, batch: Any, check: bool = False, module: LightningModule | None = None) -> Any:
        """``batch`` with its inputs set to ``fill`` (token ids to ``integer_fill``); targets and structure untouched."""
        if self.integer_fill is None and self._fill is None:
            self._fill = infer_integer_fill(batch, module, self.input_key, self.target_key)
        counts: dict[str, int] = {}
        out = zero_inputs(batch, self._config, self.name, check, counts)
        if counts.get("int") and self.integer_fill_used is None:
            fill = self._config.integer_fill
            assert fill is not None
            source = "integer_fill=" if self.integer_fill is not None else self._fill[1] if self._fill else ""
            self.integer_fill_used = (fill, source)
        return out

    def _check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        val_loader = self.val_dataloader(trainer)
        if val_loader is None:
            self._finish(trainer, "skipped", NO_VALIDATION_DATA)
            return
        train_loader = self.first_dataloader(self.train_dataloader(trainer))
        problem = replay_problem(train_loader)
        if problem is not None:
            self._finish(trainer, "skipped", cannot_replay_message(problem))
            return
        config = self._config
        pair = CopyPair(
            config,
            lambda: ShadowTrainer(pl_module, trainer),
            train_loader,
            val_loader,
            lambda batch: self.loop_batch(trainer, batch),
            lambda batch, check: self._zeroed(batch, check, pl_module),
        )
        budget = None if self.one_time_share is None else shared_budget(trainer, self.one_time_share)
        say = lambda text: rank_zero_info(f"lightning_recipe: {self.name}: {text}")  # noqa: E731
        plan = RoundPlan(config.max_steps // config.steps, budget, self.name, self._fixed_max, say)
        reduce = lambda v: self.all_reduce_sum(trainer, torch.tensor(v, dtype=torch.float64)).tolist()  # noqa: E731
        agree = lambda ok: self.decide(trainer, ok, all_=True)  # noqa: E731
        start = time.perf_counter()
        # the copies read the real loaders: put back their private generators (shuffle order) too
        with preserved_state(pl_module, loaders=[train_loader, val_loader]):
            try:
                rounds, (status, message) = run_rounds(pair, config, plan, reduce, agree)
            finally:
                pair.close()
        self.budget_steps = plan.steps
        if budget is not None:
            budget.charge(self.name, time.perf_counter() - start)
        what = "steps per copy" if rounds.zeroed_trained else "steps of the real copy"
        self._conclude(
            trainer, pair, rounds, status, message + plan.note(pair.steps_done, what), plan.numbers()
        )

    def _conclude(self, trainer: Trainer, pair: CopyPair, rounds: BaselineRounds, status: str, message: str,
                  extra: dict[str, Any]) -> None:  # fmt: skip
        numbers = rounds.numbers(pair.steps_done)
        if numbers:
            r_end, z_end = numbers["real_val_loss"], numbers["zeroed_val_loss"]
            self.real_val_loss, self.zeroed_val_loss = r_end, z_end
            if math.isfinite(r_end) and math.isfinite(z_end):
                zeroed = "zeroed_val_loss" if rounds.zeroed_trained else "zeroed_floor"
                scalars = {"real_val_loss": r_end, zeroed: z_end, "relative_gap": rounds.gap}
                recipe_logging.log_scalars(
                    trainer, {f"{_TAG}/{k}": v for k, v in scalars.items()}, trainer.global_step
                )
            if self.log_figure and trainer.is_global_zero and pair.steps_done > 0:
                series = (pair.real_losses, pair.zero_losses, *rounds.validation_curves())
                curves = [np.asarray(v, dtype=np.float64) for v in series]
                build = partial(curves_figure, *curves, status, floor=rounds.floor)
                recipe_logging.log_figure(trainer, f"{_TAG}/curves", build, trainer.global_step)
        self._finish(trainer, status, message, {**numbers, **extra} if numbers else numbers)

    def _finish(
        self, trainer: Trainer, status: str, message: str, numbers: dict[str, Any] | None = None
    ) -> None:
        if self.integer_fill_used is not None:
            fill, source = self.integer_fill_used
            message = f"{message}; token inputs set to id {fill} ({source})"
            numbers = {**(numbers or {}), "integer_fill": fill, "integer_fill_source": source}
        finding = self.record(trainer, status, message, numbers)  # type: ignore[arg-type]
        self._stored = finding.to_dict()

    def _replay(self, trainer: Trainer) -> None:
        """A resumed run: show the stored verdict again instead of redoing the check."""
        if self._stored is None or any(f.check == self.name for f in self.findings):
            return
        stored, numbers = self._stored, dict(self._stored.get("numbers") or {})
        self.real_val_loss, self.zeroed_val_loss = (
            numbers.get(k) for k in ("real_val_loss", "zeroed_val_loss")
        )
        self.record(
            trainer, stored.get("status", "skipped"), stored.get("message", ""), numbers, raise_on_fail=False
        )
