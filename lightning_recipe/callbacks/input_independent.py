"""InputIndependentBaseline: the recipe's "input-independent baseline"."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks._shadow import ShadowTrainer, replay_problem
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.checks.input_independent import (
    NO_VALIDATION_DATA,
    BaselineConfig,
    BaselineRounds,
    CopyPair,
    cannot_replay_message,
    infer_integer_fill,
    resumed_message,
    verdict,
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
    of the module train with the user's own ``training_step`` and optimizer on the same batches,
    one with its inputs replaced: floating-point inputs set to ``fill``, token ids to
    ``integer_fill`` (in a dict batch only the content: ``attention_mask``, positions and segments
    are kept, so the model runs as on real data); after every ``steps`` steps both are
    scored on held-out validation batches. ``pass``: the real copy is ``margin`` lower; ``fail``:
    both score the same, or the real copy stopped learning without beating the zeroed one;
    ``skipped``: inconclusive after ``max_steps``, or the message says what to pass. The real
    model, optimizer, data order and random state are untouched.

    TensorBoard, at step 0: ``recipe/input_independent/real_val_loss``, ``.../zeroed_val_loss``,
    ``.../relative_gap`` and the figure ``.../curves``.

    Args:
        steps: training steps per round, for each copy.
        max_steps: training steps per copy before giving up as inconclusive.
        val_batches: validation batches the copies are scored on (the first ones).
        margin: how much lower (relative) the real copy's validation loss must be.
        input_key: where the inputs are in a batch; inferred by default. Only these are zeroed.
        target_key: where the targets are; inferred by default. They are never zeroed.
        fill: the value floating-point inputs are set to.
        integer_fill: the id integer inputs (token ids) are set to. ``None`` infers it: the padding
            id the batch shows (the id where ``attention_mask == 0``), else the model config's
            ``pad_token_id`` (or an ``nn.Embedding``'s ``padding_idx``), else 0. The finding says
            which id was used.
        log_figure: log the ``curves`` figure.
        on_fail: ``"warn"`` or ``"raise"`` (raises ``RecipeCheckError`` before the first training step).

    Attributes:
        findings: one finding (``pass``, ``fail`` or ``skipped``).
        real_val_loss: validation loss of the copy trained on real inputs (``None`` before the check).
        zeroed_val_loss: validation loss of the copy trained on zeroed inputs.
        integer_fill_used: the id token inputs were set to and where it came from (``None`` when
            the inputs hold no integer tensor).

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
        max_steps: int = 500,
        val_batches: int = 8,
        margin: float = 0.05,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        fill: float = 0.0,
        integer_fill: int | None = None,
        log_figure: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        owner = self.name
        check_positive_int(owner, "steps", steps)
        check_positive_int(owner, "max_steps", max_steps)
        if max_steps < steps:
            raise ValueError(
                f"{owner}(max_steps={max_steps!r}): must be at least steps={steps!r} (one round of training)."
            )
        check_positive_int(owner, "val_batches", val_batches)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 < margin < 1.0:
            raise ValueError(
                f"{owner}(margin={margin!r}): pass a relative margin between 0 and 1, e.g. 0.05."
            )
        if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill):
            raise ValueError(f"{owner}(fill={fill!r}): pass a finite number (the value inputs are set to).")
        if integer_fill is not None and (isinstance(integer_fill, bool) or not isinstance(integer_fill, int)):
            raise TypeError(
                f"{owner}(integer_fill={integer_fill!r}): pass an integer id (e.g. the padding id) or None."
            )
        self.validate_keys(owner, input_key, target_key)
        self.steps = steps
        self.max_steps = max_steps
        self.val_batches = val_batches
        self.margin = float(margin)
        self.input_key = input_key
        self.target_key = target_key
        self.fill = float(fill)
        self.integer_fill = integer_fill
        self.log_figure = bool(log_figure)
        self.real_val_loss: float | None = None
        self.zeroed_val_loss: float | None = None
        self.integer_fill_used: tuple[int, str] | None = None
        self._fill: tuple[int, str] | None = None
        self._done = False
        self._stored: dict[str, Any] | None = None

    # ------------------------------------------------------------------ hooks
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

    # ------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"done": self._done, "finding": self._stored}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = bool(state_dict.get("done", False))
        self._stored = state_dict.get("finding")

    # ------------------------------------------------------------------ the check
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
        config, strategy = self._config, trainer.strategy
        pair = CopyPair(
            config,
            lambda: ShadowTrainer(pl_module, trainer),
            train_loader,
            val_loader,
            lambda batch: strategy.batch_to_device(batch, strategy.root_device),
            lambda batch, check: self._zeroed(batch, check, pl_module),
        )
        # the copies read the real loaders: put back their private generators (shuffle order) too
        with preserved_state(pl_module, loaders=[train_loader, val_loader]):
            try:
                rounds, found = self._rounds(trainer, pair, config.max_steps // config.steps)
            finally:
                pair.close()
        self._conclude(trainer, pair, rounds, *found)

    def _rounds(
        self, trainer: Trainer, pair: CopyPair, rounds: int
    ) -> tuple[BaselineRounds, tuple[str, str]]:
        """Advance both copies round by round on every rank until a verdict (all ranks agree on it)."""
        measured = BaselineRounds()
        for k in range(rounds + 1):
            reason = pair.advance(k)
            if not self.decide(trainer, reason is None, all_=True):
                return measured, ("skipped", reason or "another process could not run the check")
            local = torch.tensor(pair.local, dtype=torch.float64)
            measured.add(self.all_reduce_sum(trainer, local).tolist(), pair.steps_done)
            found = verdict(self._config, measured, last=k == rounds) if k > 0 else None
            if found is not None:
                return measured, found
        raise AssertionError("the last round always gives a verdict")  # pragma: no cover

    def _conclude(
        self, trainer: Trainer, pair: CopyPair, rounds: BaselineRounds, status: str, message: str
    ) -> None:
        numbers = rounds.numbers(pair.steps_done)
        if numbers:
            r_end, z_end = numbers["real_val_loss"], numbers["zeroed_val_loss"]
            self.real_val_loss, self.zeroed_val_loss = r_end, z_end
            if math.isfinite(r_end) and math.isfinite(z_end):
                recipe_logging.log_scalars(
                    trainer,
                    {
                        f"{_TAG}/real_val_loss": r_end,
                        f"{_TAG}/zeroed_val_loss": z_end,
                        f"{_TAG}/relative_gap": rounds.gap,
                    },
                    trainer.global_step,
                )
            if self.log_figure and trainer.is_global_zero and pair.steps_done > 0:
                series = (pair.real_losses, pair.zero_losses, *rounds.validation_curves())
                curves = [np.asarray(v, dtype=np.float64) for v in series]
                build = lambda: curves_figure(*curves, status)  # noqa: E731
                recipe_logging.log_figure(trainer, f"{_TAG}/curves", build, trainer.global_step)
        self._finish(trainer, status, message, numbers)

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
        stored = self._stored
        numbers = dict(stored.get("numbers") or {})
        self.real_val_loss = numbers.get("real_val_loss")
        self.zeroed_val_loss = numbers.get("zeroed_val_loss")
        self.record(
            trainer, stored.get("status", "skipped"), stored.get("message", ""), numbers, raise_on_fail=False
        )
