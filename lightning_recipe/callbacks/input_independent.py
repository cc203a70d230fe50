"""InputIndependentBaseline: the recipe's "input-independent baseline"."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks._shadow import ShadowTrainer, ShadowUnsupported, replay_problem
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import KeySpec, batch_size_of, map_tensors, split_batch
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.state import RNGState, preserved_state
from lightning_recipe.plots.style import new_figure

__all__ = ["InputIndependentBaseline"]

_TAG = "recipe/input_independent"
#: Two losses closer than this (relative) are "the same": the input made no difference at all.
_IDENTICAL = 1e-6
#: A copy whose gradients over a round add up to less than this fraction of their summed norms is
#: no longer learning: its gradients are noise around a minimum (~1/sqrt(steps)), not a consistent
#: direction (~1).
_DRIFT = 0.3
#: The real copy passes only when the zeroed copy, improving at its last round's pace, could not
#: close the gap within this many rounds (a slow zeroed copy still learning the target scale).
_LOOKAHEAD = 3.0


class _Skip(Exception):
    """The check cannot run on this model or data (the message says why, for a ``skipped`` finding)."""


class InputIndependentBaseline(RecipeCallback):
    """Check that the model extracts information from its input: train a copy on zeroed inputs.

    Recipe, "input-independent baseline": *"Train an input-independent baseline (e.g. easiest is
    to just set all your inputs to zero). This should perform worse than when you actually plug in
    your data without zeroing it out. Does it?"*

    Once, before the first training step, two detached copies of the module are trained with the
    user's own ``training_step`` and ``configure_optimizers`` on the same training batches (same
    order, same dropout masks): one on the real inputs, one with every floating-point input tensor
    set to ``fill`` (the targets are never touched). After every ``steps`` steps (a round) both
    are scored on the same held-out validation batches with the ``training_step`` loss in eval
    mode (``validation_step`` usually returns nothing to compare). Held-out data matters: on its
    training batches a network memorises even shuffled labels. The real model, its optimizer and
    the random state are untouched.

    Verdicts, after each round:

    * ``pass``: the real copy's validation loss is at least ``margin`` (relative) below the zeroed
      copy's, and the zeroed copy, improving at its last round's pace, could not close that gap
      within three more rounds (a zeroed copy still learning the target scale is no baseline yet);
    * ``fail``: the two copies score exactly the same at every point (the output does not depend
      on the input: a forward that ignores its argument, inputs multiplied by 0), or the real copy
      has stopped learning (its gradients over the round add up to noise, its validation loss no
      longer falls) without beating the zeroed copy by ``margin``: the model extracts no
      information from its input (labels shuffled or misaligned with the inputs, inputs that never
      reach the net);
    * otherwise another round, up to ``max_steps``; then ``skipped`` as inconclusive, saying which
      copy was still learning. Also ``skipped`` (with what to pass) without validation data,
      without targets in the batch, for a zeroed copy whose loss is not finite, a module that
      cannot be copied and trained (manual optimization), or training data that cannot be read
      again without taking batches from the real run (an iterator, or an ``IterableDataset`` whose
      ``__iter__`` hands out the same iterator; one whose ``__iter__`` starts a new pass, such as
      a generator, is read).

    The copies read the real training dataloader from its start; the state of its private
    generators (``DataLoader(generator=...)``, the sampler's) is put back afterwards, so the real
    run sees the same batches in the same order. Inside the copies, ``self.trainer`` is a
    read-only view of the real trainer: ``self.optimizers()`` / ``self.lr_schedulers()`` give the
    copy's own, and ``self.log`` does nothing.

    TensorBoard, at the step the check ran (0): ``recipe/input_independent/real_val_loss``,
    ``.../zeroed_val_loss``, ``.../relative_gap`` (``(zeroed - real) / zeroed``), and the figure
    ``.../curves``: the training loss of both copies per step and their validation losses after
    each round.

    Integer input tensors (token ids, indices) are left as they are unless ``integer_fill`` is
    given: "zeroed" then means every id is replaced by ``integer_fill`` (e.g. the padding id). When
    the inputs hold no floating-point tensor and ``integer_fill`` is ``None`` the check is skipped.

    The copies use the optimizer's starting learning rate: a scheduler built in
    ``configure_optimizers`` is not stepped, and a warm-up that starts near zero is replaced by its
    base rate (``initial_lr``). Gradient clipping and accumulation are not applied. Cost, once:
    ``2 * steps`` training steps and ``2 * val_batches`` evaluation batches per round (one round for
    a healthy model, at most ``max_steps / steps``), and two copies of the module and of its
    optimizer state in memory while it runs.

    Args:
        steps: training steps per round, for each copy.
        max_steps: training steps per copy before giving up as inconclusive.
        val_batches: validation batches the copies are scored on (the first ones of the first
            validation dataloader).
        margin: how much lower (relative) the real copy's validation loss must be.
        input_key: where the inputs are in a batch (dict key, position, or ``callable(batch)``);
            inferred by default. Only the tensors found there are zeroed.
        target_key: where the targets are; inferred by default. They are never zeroed.
        fill: the value floating-point inputs are set to.
        integer_fill: the value integer inputs are set to; ``None`` leaves them unchanged.
        log_figure: log the ``curves`` figure.
        on_fail: ``"warn"`` or ``"raise"`` (raises :class:`~lightning_recipe.report.RecipeCheckError`
            before the first training step).

    Attributes:
        findings: one finding (``pass``, ``fail`` or ``skipped``).
        real_val_loss: validation loss of the copy trained on real inputs (``None`` before the check).
        zeroed_val_loss: validation loss of the copy trained on zeroed inputs.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> class Model(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Linear(4, 3)
        ...     def training_step(self, batch, batch_idx):
        ...         return F.cross_entropy(self.net(batch[0]), batch[1])
        ...     def validation_step(self, batch, batch_idx):
        ...         pass
        ...     def configure_optimizers(self):
        ...         return torch.optim.Adam(self.parameters(), lr=0.05)
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(256, 4, generator=g)
        >>> y = x[:, :3].argmax(dim=1)                            # the label is in the input
        >>> data = DataLoader(TensorDataset(x, y), batch_size=32)
        >>> check = InputIndependentBaseline(steps=40)
        >>> trainer = Trainer(max_steps=1, logger=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   callbacks=[check], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(Model(), data, data)
        >>> check.findings[0].status, check.real_val_loss < check.zeroed_val_loss
        ('pass', True)
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
            self._finish(
                trainer,
                "skipped",
                f"resumed at step {trainer.global_step} without this check's state; it runs once, before "
                "the first training step",
            )
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
    def _check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        val_loader = self.val_dataloader(trainer)
        if val_loader is None:
            self._finish(
                trainer,
                "skipped",
                "no validation data: the copies must be compared on held-out data (a network memorises "
                "even shuffled labels of its training batches); pass `val_dataloaders=` to `Trainer.fit` "
                "or a datamodule with `val_dataloader()`",
            )
            return
        train_loader = self.first_dataloader(self.train_dataloader(trainer))
        problem = replay_problem(train_loader)
        if problem is not None:
            self._finish(
                trainer,
                "skipped",
                f"cannot replay the training data for the copies: {problem}; give the dataset an `__iter__` "
                "that starts a new pass on each call (a generator), or use a map-style Dataset",
            )
            return
        rounds = self.max_steps // self.steps
        verdict: tuple[str, str] | None = None
        # the copies read the real loaders: put back their private generators (shuffle order) too
        with preserved_state(pl_module, loaders=[train_loader, val_loader]):
            run = _Run(self, trainer, pl_module, train_loader, val_loader)
            try:
                for k in range(rounds + 1):
                    reason = run.advance(k)
                    if not self.decide(trainer, reason is None, all_=True):
                        verdict = ("skipped", reason or "another process could not run the check")
                        break
                    run.reduce()
                    if k > 0:
                        verdict = self._verdict(run, last=k == rounds)
                        if verdict is not None:
                            break
            finally:
                run.close()
        assert verdict is not None
        self._conclude(trainer, run, *verdict)

    def _verdict(self, run: _Run, last: bool) -> tuple[str, str] | None:
        """The verdict after a round, or ``None`` to train another round."""
        real, zero = run.real_val, run.zero_val
        r_end, z_end = real[-1], zero[-1]
        steps = run.steps_done
        if not math.isfinite(z_end):
            return "skipped", (
                f"the copy trained on zeroed inputs has a non-finite validation loss ({z_end}); the model "
                f"cannot take constant inputs: pass another `fill=` (now {self.fill})"
            )
        if not math.isfinite(r_end):
            return "skipped", (
                f"the copy trained on real inputs diverged (validation loss {r_end}) within {steps} steps; "
                "check the learning rate"
            )
        if z_end <= 1e-12:
            return "skipped", (
                f"the copy trained on zeroed inputs reached a validation loss of {z_end:.3g}: the targets are "
                "predictable without the input, so there is nothing to compare"
            )
        summary = f"validation loss {r_end:.4g} with real inputs vs {z_end:.4g} with zeroed inputs after {steps} steps"
        if all(abs(a - b) <= _IDENTICAL * max(1.0, abs(b)) for a, b in zip(real, zero)):
            return "fail", (
                f"the model's output does not depend on its input: {summary}, identical at every point; "
                "check that the inputs reach the net (forward ignores its argument, inputs multiplied by 0, "
                "a learned constant)"
            )
        gap = run.gap
        zero_fall = max(0.0, zero[-2] - z_end)  # how much the zeroed copy improved in the last round
        if gap >= self.margin and _LOOKAHEAD * zero_fall <= z_end - r_end:
            return "pass", f"the model uses its input: {summary} ({gap:.0%} lower)"
        real_drift = run.real_drift[-1]
        if gap < self.margin and real_drift <= _DRIFT and _drop(real) <= self.margin / 2:
            return "fail", (
                f"the model extracts no information from its input: {summary} (gap {gap:.1%} < margin "
                f"{self.margin:.0%}) and the real copy has stopped improving; check that labels are aligned with "
                "inputs (shuffled or misindexed labels) and that the inputs reach the net"
            )
        if not last:
            return None
        if gap >= self.margin:
            return "skipped", (
                f"inconclusive: {summary}, but the zeroed copy is still improving ({zero_fall:.4g} in the last "
                f"{self.steps} steps), so it is no baseline yet; pass a larger `max_steps=` (now {self.max_steps}) "
                "or check the target scale (unnormalised regression targets take long to reach)"
            )
        how = (
            f"its gradients still point one way (drift {real_drift:.2f})"
            if real_drift > _DRIFT
            else f"its validation loss still fell {_drop(real):.0%} in the last {self.steps} steps"
        )
        return "skipped", (
            f"inconclusive: {summary}, but the real copy is still learning ({how}); check the learning rate "
            f"or pass a larger `max_steps=` (now {self.max_steps})"
        )

    def _conclude(self, trainer: Trainer, run: _Run, status: str, message: str) -> None:
        numbers: dict[str, Any] = {}
        if run.real_val:
            r_end, z_end = run.real_val[-1], run.zero_val[-1]
            self.real_val_loss, self.zeroed_val_loss = r_end, z_end
            numbers = {
                "real_val_loss": r_end,
                "zeroed_val_loss": z_end,
                "relative_gap": run.gap,
                "fit_gap": run.fit_gap,
                "real_drift": run.real_drift,
                "zeroed_drift": run.zero_drift,
                "steps": run.steps_done,
                "real_val_loss_at": dict(zip(run.eval_steps, run.real_val)),
                "zeroed_val_loss_at": dict(zip(run.eval_steps, run.zero_val)),
            }
            if math.isfinite(r_end) and math.isfinite(z_end):
                recipe_logging.log_scalars(
                    trainer,
                    {
                        f"{_TAG}/real_val_loss": r_end,
                        f"{_TAG}/zeroed_val_loss": z_end,
                        f"{_TAG}/relative_gap": run.gap,
                    },
                    trainer.global_step,
                )
            if self.log_figure and trainer.is_global_zero and run.steps_done > 0:
                self._log_curves(trainer, run, status)
        self._finish(trainer, status, message, numbers)

    def _zeroed(self, batch: Any, check: bool = False) -> Any:
        """``batch`` with every input tensor set to ``fill`` (integers to ``integer_fill``); targets untouched."""
        try:
            parts = split_batch(batch, input_key=self.input_key, target_key=self.target_key)
        except ArgumentError as err:  # a key the user passed: theirs to fix
            raise ArgumentError(f"{self.name}: {err}") from err
        except ValueError as err:  # a layout it cannot infer: the check cannot apply
            raise _Skip(f"cannot split the batch ({err})") from err
        if parts.targets is None:
            raise _Skip(
                "found no targets in the batch (zeroing the inputs of an input-reconstruction task would "
                "also zero what it predicts); pass `target_key=` if the batch has targets"
            )
        input_ids: set[int] = set()
        map_tensors(parts.inputs, lambda t: input_ids.add(id(t)))
        input_ids.discard(id(parts.targets))
        counts = {"float": 0, "int": 0}

        def fill(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in input_ids:
                return t
            if t.is_floating_point() or t.is_complex():
                counts["float"] += 1
                return torch.full_like(t, self.fill)
            if self.integer_fill is not None and t.dtype != torch.bool:
                counts["int"] += 1
                return torch.full_like(t, self.integer_fill)
            return t

        out = map_tensors(batch, fill)
        if check:
            if counts["float"] + counts["int"] == 0:
                integer: list[bool] = []
                map_tensors(parts.inputs, lambda t: integer.append(not t.is_floating_point()))
                if any(integer) and self.integer_fill is None:
                    raise _Skip(
                        "the inputs are integer tensors (token ids?) and integer_fill=None; pass "
                        "`integer_fill=` (e.g. the padding id) to replace every id with it"
                    )
                raise _Skip(
                    "found no input tensor to zero in the batch (the inputs `input_key=` returns are not "
                    "tensors of the batch itself); pass `input_key=` as a dict key or a position"
                )
            after = split_batch(out, input_key=self.input_key, target_key=self.target_key).targets
            if after is None or after.shape != parts.targets.shape or not torch.equal(after, parts.targets):
                raise _Skip(
                    "zeroing the inputs also changed the targets (they share a tensor); pass `input_key=` "
                    "and `target_key=` as dict keys or positions"
                )
        return out

    def _finish(
        self, trainer: Trainer, status: str, message: str, numbers: dict[str, Any] | None = None
    ) -> None:
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

    def _log_curves(self, trainer: Trainer, run: _Run, status: str) -> None:
        real_curve = np.asarray(run.real_losses, dtype=np.float64)
        zero_curve = np.asarray(run.zero_losses, dtype=np.float64)
        eval_steps = np.asarray(run.eval_steps, dtype=np.float64)
        real_val = np.asarray(run.real_val, dtype=np.float64)
        zero_val = np.asarray(run.zero_val, dtype=np.float64)

        def build():
            return _curves_figure(real_curve, zero_curve, eval_steps, real_val, zero_val, status)

        recipe_logging.log_figure(trainer, f"{_TAG}/curves", build, trainer.global_step)


class _Run:
    """The two copies and their measurements, advanced round by round (every rank in lock-step).

    Round 0 builds the copies and scores them at initialisation; round k >= 1 trains both for
    ``steps`` more steps on the same batches (same order, same random numbers) and scores them.
    :meth:`advance` does the local work and reports a reason to skip instead of raising, so that
    the caller can agree with the other ranks before :meth:`reduce` all-reduces the sums.
    """

    def __init__(
        self,
        owner: InputIndependentBaseline,
        trainer: Trainer,
        pl_module: LightningModule,
        train_loader: Any,
        val_loader: Any,
    ) -> None:
        self.owner = owner
        self.trainer = trainer
        self.pl_module = pl_module
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.real: ShadowTrainer | None = None
        self.zero: ShadowTrainer | None = None
        self.real_losses: list[float] = []
        self.zero_losses: list[float] = []
        self.val: list[Any] = []
        self.batches: Iterator[Any] | None = None
        self.steps_done = 0
        self.eval_steps: list[int] = []
        self.real_val: list[float] = []
        self.zero_val: list[float] = []
        self.real_train: list[float] = []
        self.real_drift: list[float] = []
        self.zero_drift: list[float] = []
        self._real_drift: dict[str, Any] = {}
        self._zero_drift: dict[str, Any] = {}
        self.zero_train: list[float] = []
        self._local: list[float] = []

    @property
    def gap(self) -> float:
        """``(zeroed - real) / zeroed`` of the latest validation losses."""
        if not self.real_val:
            return float("nan")
        r, z = self.real_val[-1], self.zero_val[-1]
        if not (math.isfinite(r) and math.isfinite(z)) or z == 0:
            return float("nan")
        return (z - r) / abs(z)

    def advance(self, k: int) -> str | None:
        """Round ``k``; returns ``None`` when done, else the reason the check cannot run here."""
        try:
            if k == 0:
                self._setup()
            else:
                self._train(self.owner.steps)
            self._local = self._evaluate() + self._train_means() + self._drifts()
        except ArgumentError:
            raise
        except (ShadowUnsupported, _Skip) as err:
            return str(err)
        except Exception as err:  # the user's step failed on a copy: the real run will show it
            return f"a copy of the module failed ({type(err).__name__}: {err})"
        return None

    def reduce(self) -> None:
        """All-reduce this round's sums (call on every rank)."""
        local = torch.tensor(self._local, dtype=torch.float64)
        total = self.owner.all_reduce_sum(self.trainer, local).tolist()
        self.real_val.append(total[0] / total[1] if total[1] > 0 else float("nan"))
        self.zero_val.append(total[2] / total[3] if total[3] > 0 else float("nan"))
        self.real_train.append(total[4] / total[6] if total[6] > 0 else float("nan"))
        self.zero_train.append(total[5] / total[6] if total[6] > 0 else float("nan"))
        self.real_drift.append(total[7] / total[9] if total[9] > 0 else float("nan"))
        self.zero_drift.append(total[8] / total[10] if total[10] > 0 else float("nan"))
        self.eval_steps.append(self.steps_done)

    def close(self) -> None:
        """Keep the loss curves, free the copies."""
        if self.real is not None:
            self.real_losses = list(self.real.losses)
        if self.zero is not None:
            self.zero_losses = list(self.zero.losses)
        self.real = self.zero = None
        self.val = []
        self.batches = None

    def _setup(self) -> None:
        for batch in self.val_loader:
            self.val.append(batch)
            if len(self.val) >= self.owner.val_batches:
                break
        if not self.val:
            raise _Skip("the validation dataloader yielded no batch; pass validation data to `Trainer.fit`")
        self.real = ShadowTrainer(self.pl_module, self.trainer)
        self.zero = ShadowTrainer(self.pl_module, self.trainer)
        self.batches = self._train_batches()

    def _train_batches(self) -> Iterator[Any]:
        strategy = self.trainer.strategy
        while True:
            produced = False
            for batch in self.train_loader:
                produced = True
                yield strategy.batch_to_device(batch, strategy.root_device)
            if not produced:
                raise _Skip("the training dataloader yielded no batch")

    @staticmethod
    def _accumulate(shadow: ShadowTrainer, drift: dict[str, Any]) -> None:
        """Add this step's gradient to the round's sum and its norm to the sum of norms."""
        grads = [p.grad for p in shadow.module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.detach().reshape(-1).double() for g in grads])
        drift["sum"] = flat if drift.get("sum") is None else drift["sum"] + flat
        drift["norms"] = drift.get("norms", 0.0) + float(flat.norm())

    def _train(self, steps: int) -> None:
        assert self.real is not None and self.zero is not None and self.batches is not None
        self._real_drift: dict[str, Any] = {}
        self._zero_drift: dict[str, Any] = {}
        for _ in range(steps):
            batch = next(self.batches)
            zeroed = self.owner._zeroed(batch, check=self.steps_done == 0)
            rng = RNGState()
            self.real.step(batch, self.steps_done)
            rng.restore()  # the same dropout masks for both copies
            self.zero.step(zeroed, self.steps_done)
            self._accumulate(self.real, self._real_drift)
            self._accumulate(self.zero, self._zero_drift)
            self.steps_done += 1

    def _evaluate(self) -> list[float]:
        """``[real loss sum, samples, zeroed loss sum, samples]`` over the validation batches."""
        assert self.real is not None and self.zero is not None
        strategy = self.trainer.strategy
        sums = [0.0, 0.0, 0.0, 0.0]
        for i, raw in enumerate(self.val):
            batch = strategy.batch_to_device(raw, strategy.root_device)
            n = float(batch_size_of(batch) or 1)
            sums[0] += self.real.loss(batch, i) * n
            sums[1] += n
            sums[2] += self.zero.loss(self.owner._zeroed(batch, check=i == 0), i) * n
            sums[3] += n
        return sums

    def _drifts(self) -> list[float]:
        """``[|sum g| real, |sum g| zeroed, sum |g| real, sum |g| zeroed]`` over the round's steps."""
        out = []
        for drift in (self._real_drift, self._zero_drift):
            out.append(float(drift["sum"].norm()) if drift.get("sum") is not None else 0.0)
        out += [self._real_drift.get("norms", 0.0), self._zero_drift.get("norms", 0.0)]
        return out

    def _train_means(self) -> list[float]:
        """``[real, zeroed, 1]``: mean training loss over the last quarter of the round (both copies saw the same batches)."""
        if self.real is None or self.zero is None or not self.real.losses:
            return [0.0, 0.0, 0.0]
        window = max(1, self.owner.steps // 4)
        real = self.real.losses[-window:]
        zero = self.zero.losses[-window:]
        return [sum(real) / len(real), sum(zero) / len(zero), 1.0]

    @property
    def fit_gap(self) -> float:
        """``(zeroed - real) / zeroed`` of the latest training losses: how much better real inputs fit."""
        if not self.real_train:
            return float("nan")
        r, z = self.real_train[-1], self.zero_train[-1]
        if not (math.isfinite(r) and math.isfinite(z)) or z == 0:
            return float("nan")
        return (z - r) / abs(z)


def _drop(values: list[float]) -> float:
    """Relative fall of the last value against the one before (positive: still improving)."""
    if len(values) < 2 or not math.isfinite(values[-1]) or values[-1] == 0 or not math.isfinite(values[-2]):
        return 0.0
    return (values[-2] - values[-1]) / abs(values[-1])


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if values.size < 3 or window <= 1:
        return values
    window = min(window, values.size)
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def _curves_figure(
    real_curve: np.ndarray,
    zero_curve: np.ndarray,
    eval_steps: np.ndarray,
    real_val: np.ndarray,
    zero_val: np.ndarray,
    status: str,
) -> Any:
    fig = new_figure(6.4, 3.6, dpi=100)
    ax = fig.add_subplot()
    window = max(1, len(real_curve) // 20)
    steps = np.arange(len(real_curve))
    ax.plot(steps, real_curve, color="tab:blue", alpha=0.2, linewidth=0.8)
    ax.plot(steps, _smooth(real_curve, window), color="tab:blue", linewidth=1.6, label="train, real inputs")
    steps = np.arange(len(zero_curve))
    ax.plot(steps, zero_curve, color="tab:orange", alpha=0.2, linewidth=0.8)
    ax.plot(
        steps, _smooth(zero_curve, window), color="tab:orange", linewidth=1.6, label="train, zeroed inputs"
    )
    ax.plot(
        eval_steps,
        real_val,
        "o:",
        color="tab:blue",
        markersize=7,
        linewidth=1,
        label="validation, real inputs",
    )
    ax.plot(
        eval_steps,
        zero_val,
        "s:",
        color="tab:orange",
        markersize=7,
        linewidth=1,
        label="validation, zeroed inputs",
    )
    finite = np.concatenate([real_curve, zero_curve, real_val, zero_val])
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel("shadow training step")
    ax.set_ylabel("loss (training_step)")
    verdict = {"pass": "the model uses its input", "fail": "NO information extracted from the input"}
    ax.set_title(
        f"Input-independent baseline: real vs zeroed inputs ({status}: {verdict.get(status, 'inconclusive')})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
