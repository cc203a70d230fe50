"""What every recipe callback shares: findings, ``on_fail``, skip rules, DDP helpers, data access.

A recipe callback subclasses :class:`RecipeCallback`, sets ``recipe_step`` (the words of the
recipe), and calls :meth:`RecipeCallback.record` with a :class:`~lightning_recipe.report.Finding`.
``record`` keeps the finding, warns (rank zero, once per message) for ``warn``/``fail``, notifies a
:class:`~lightning_recipe.report.RecipeReport` if one is attached, and raises
:class:`~lightning_recipe.report.RecipeCheckError` for a ``fail`` under ``on_fail="raise"``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from lightning_recipe import writer as recipe_logging
from lightning_recipe.core.arguments import check_choice, check_positive_int
from lightning_recipe.core.batches import KeySpec, split_batch, validate_key_spec
from lightning_recipe.core.budget import (
    PER_BATCH_HOOKS,
    Cadence,
    CostMeter,
    is_before,
    set_running,
    skip_unused_hooks,
)
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.findings import RECIPE_STEPS, Finding, RecipeCheckError, RecipeWarning, Skip, Status
from lightning_recipe.report import RecipeReport

__all__ = ["OnFail", "RecipeCallback", "check_choice", "check_positive_int"]

OnFail = Literal["warn", "raise"]


#: The hooks guarded by :func:`_guard`: an unexpected error inside a check never ends the run.
_GUARDED_HOOKS = frozenset(
    {
        "on_fit_start",
        "on_fit_end",
        "on_train_start",
        "on_train_end",
        "on_train_epoch_start",
        "on_train_epoch_end",
        "on_train_batch_start",
        "on_train_batch_end",
        "on_validation_start",
        "on_validation_end",
        "on_validation_epoch_start",
        "on_validation_epoch_end",
        "on_validation_batch_start",
        "on_validation_batch_end",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_before_zero_grad",
    }
)


#: Every time a guarded hook stopped its callback after an unexpected error: ``(callback, hook,
#: error)``. Training goes on, so a test would not notice; the test suite's autouse fixture reads
#: this and fails any test in which a recipe callback stopped itself, unless the test expects it.
STOPPED_AFTER_ERROR: list[tuple[str, str, str]] = []


#: The checks that run once, at the start of training (some on the first batch): all their cost is
#: one-time cost ("before training" in the report), whichever hook it falls in.
ONE_TIME_CHECKS = frozenset(
    {
        "DataInspector",
        "FinalBiasInit",
        "LossAtInitCheck",
        "BatchIndependenceCheck",
        "OverfitBatchCheck",
        "InputIndependentBaseline",
        "LRScheduleAudit",
    }
)


#: The hooks a one-time check's work starts in: the first of them says what is running.
_ANNOUNCE_IN = frozenset({"on_fit_start", "on_train_start", "on_train_batch_start", "on_before_backward"})


def _announce(callback: RecipeCallback, trainer: Trainer) -> None:
    """One line before a one-time check runs (the progress bar shows nothing while it does)."""
    if trainer.is_global_zero and callback.is_fitting(trainer) and not trainer.sanity_checking:
        rank_zero_info(f"lightning_recipe: running {callback.name} ({callback.recipe_step}) before training")


def _guard(hook: Callable[..., Any], one_time: bool = False) -> Callable[..., Any]:
    """Turn an unexpected exception in a check's hook into a ``skipped`` finding and a warning.

    A recipe check exists to find bugs in the user's run; a model it cannot handle must not end
    that run. ``RecipeCheckError`` (``on_fail="raise"``), ``ArgumentError`` (an argument the user
    passed does not fit the run: only the user can fix it) and interrupts pass through; after an
    error the callback stays quiet for the rest of the run.
    """

    before = one_time or is_before(hook.__name__)
    name = hook.__name__

    @functools.wraps(hook)
    def guarded(self: RecipeCallback, trainer: Trainer, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__
        if state.get("_broken"):
            return None
        meter = state.get("_cost")
        if meter is None:
            meter = state["_cost"] = CostMeter()
        if one_time and not state.get("_announced") and name in _ANNOUNCE_IN:
            state["_announced"] = True
            _announce(self, trainer)
        previous = set_running((meter, before))  # figures submitted now are charged to this callback
        start = time.perf_counter()
        try:
            return hook(self, trainer, *args, **kwargs)
        except (RecipeCheckError, ArgumentError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:
            self._broken = True
            STOPPED_AFTER_ERROR.append((type(self).__name__, hook.__name__, f"{type(err).__name__}: {err}"))
            self.record(
                trainer,
                "skipped",
                f"skipped, because the check could not run on this model ({type(err).__name__}: {err})",
                {"error": type(err).__name__},
                raise_on_fail=False,
            )
            self.warn(
                f"{self.name} stopped itself after an error and training goes on: {type(err).__name__}: {err}"
            )
            return None
        finally:
            meter.add("setup" if before else name, time.perf_counter() - start)
            set_running(previous)

    guarded.__recipe_guarded__ = True  # type: ignore[attr-defined]
    return guarded


def _cached_state_key(fget: Callable[[Any], str]) -> Callable[[Any], str]:
    """``state_key`` is read at every hook call (Lightning's profiler label): keep it for the run
    (it is computed again after ``setup`` and ``teardown``)."""

    @functools.wraps(fget)
    def cached(self: Any) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            key = self.__dict__["_state_key"] = fget(self)
        return key

    cached.__recipe_cached__ = True  # type: ignore[attr-defined]
    return cached


class RecipeCallback(Callback):
    """Base class of the recipe callbacks.

    Hooks that subclasses define are guarded: an unexpected error inside a check becomes a
    ``skipped`` finding and a warning, and training goes on (``RecipeCheckError`` under
    ``on_fail="raise"`` still ends it, as asked). Argument errors (``ArgumentError``, and anything
    raised in ``__init__`` or ``setup``) are not caught.

    Attributes:
        findings: the :class:`~lightning_recipe.report.Finding` objects of the current run.
    """

    #: The recipe step this callback implements (shown in the report); filled in from the one list,
    #: :data:`~lightning_recipe.findings.RECIPE_STEPS`, for the callbacks it names.
    recipe_step: str = ""
    #: A check that runs once at the start of training: its cost counts as one-time cost.
    one_time: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "recipe_step" not in vars(cls):
            cls.recipe_step = RECIPE_STEPS.get(cls.__name__, cls.recipe_step)
        if "one_time" not in vars(cls) and cls.__name__ in ONE_TIME_CHECKS:
            cls.one_time = True
        for name in _GUARDED_HOOKS & set(vars(cls)):
            hook = vars(cls)[name]
            if callable(hook) and not getattr(hook, "__recipe_guarded__", False):
                setattr(cls, name, _guard(hook, one_time=cls.one_time))
        skip_unused_hooks(cls, Callback)  # Lightning skips the per-batch hooks it does not override
        key = vars(cls).get("state_key")
        if isinstance(key, property) and key.fget is not None and not hasattr(key.fget, "__recipe_cached__"):
            cls.state_key = property(_cached_state_key(key.fget), doc=key.__doc__)  # type: ignore[assignment]

    def __init__(self, on_fail: OnFail = "warn") -> None:
        check_choice(type(self).__name__, "on_fail", on_fail, ("warn", "raise"))
        self.on_fail = on_fail
        self.findings: list[Finding] = []
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ cost and cadence
    @property
    def cost(self) -> CostMeter:
        """What this callback cost in the current run: seconds in its hooks and its figures."""
        meter = self.__dict__.get("_cost")
        if meter is None:
            meter = self.__dict__["_cost"] = CostMeter()
        return meter

    @staticmethod
    def planned_steps(trainer: Trainer) -> float | None:
        """The planned optimizer steps of the run (``trainer.estimated_stepping_batches``; ``None`` if unknown)."""
        try:
            return float(trainer.estimated_stepping_batches)
        except Exception:
            return None

    def start_cadence(self, trainer: Trainer, cadence: Cadence) -> None:
        """At the start of training: plan ``cadence`` for the run's length; the budget clock starts
        at its first point."""
        cadence.start(self.planned_steps(trainer), int(trainer.global_step))
        self.__dict__["_clock"] = None
        if cadence.waits_for_budget:  # the budget clock starts now: the first point waits to be afforded
            self._budget_clock(int(trainer.global_step))

    def _budget_clock(self, step: int) -> tuple[float, float, float]:
        """Cost since the first point, training time since then, and seconds per step."""
        now = time.perf_counter()
        clock = self.__dict__.get("_clock")
        if clock is None:  # the first point: its figures (rendered later) count, what came before not
            clock = self.__dict__["_clock"] = (now, int(step), self.cost.total_s)
        elapsed, steps = now - clock[0], int(step) - clock[1]
        return self.cost.total_s - clock[2], elapsed, elapsed / steps if steps > 0 else 0.0

    def cadence_due(self, cadence: Cadence, step: int) -> bool:
        """Whether ``step`` is due; at a due step of a budgeted cadence the cost is read again (the
        figures of the last point may have finished since). Rank-local: not for collective points."""
        if not cadence.due(step):
            return False
        if cadence.fixed or self.__dict__.get("_clock") is None:
            return True
        return cadence.recheck(step, *self._budget_clock(step))

    def cadence_taken(self, trainer: Trainer, cadence: Cadence, step: int, collective: bool = False) -> None:
        """A point was taken at ``step``: schedule the next one from this callback's cost so far.

        ``collective``: the points run collectives, so every rank must take the same ones; the next
        step is then the latest any rank proposes (call it on every rank).
        """
        self.cost.points += 1
        cadence.taken(int(step), *self._budget_clock(step))
        if collective and not cadence.fixed and trainer.world_size > 1:
            cadence.next_due = int(self.all_reduce_max(trainer, float(cadence.next_due)))

    def retire_hook(self, name: str) -> None:
        """Stop Lightning calling this callback's per-batch hook ``name`` for the rest of the fit: an
        instance attribute ``None``, which ``Trainer._call_callback_hooks`` skips (``setup`` brings it
        back). For a hook whose work is done, e.g. a one-time check after its first batch."""
        self.__dict__[name] = None

    def __getstate__(self) -> dict[str, Any]:
        # Lightning attaches the module's bound ``log``/``log_dict`` to every callback
        # (``_attach_model_logging_functions``): a pickled callback must not drag the module along.
        state = dict(self.__dict__)
        for transient in ("log", "log_dict", "_clock", "_state_key", *PER_BATCH_HOOKS):
            state.pop(transient, None)
        return state

    # ------------------------------------------------------------------ findings
    @property
    def name(self) -> str:
        return type(self).__name__

    def record(
        self,
        trainer: Trainer | None,
        status: Status,
        message: str,
        numbers: dict[str, Any] | None = None,
        check: str | None = None,
        raise_on_fail: bool = True,
    ) -> Finding:
        """Keep a finding, warn for ``warn``/``fail``, notify the report, raise under ``on_fail="raise"``.

        Args:
            trainer: the trainer (``None`` outside a run).
            status: ``"pass"``, ``"warn"``, ``"fail"`` or ``"skipped"``.
            message: one actionable line.
            numbers: the measurements behind it.
            check: the check's name if not the class name (a callback may run several checks).
            raise_on_fail: set ``False`` to defer raising (e.g. to raise on every rank together).
        """
        finding = Finding(
            check=check or self.name,
            status=status,
            message=message,
            numbers=dict(numbers or {}),
            step=self.recipe_step,
            global_step=None if trainer is None else int(trainer.global_step),
        )
        self.findings.append(finding)
        if finding.is_problem:
            self.warn(f"{finding.check}: {message}")
        if trainer is not None:
            for cb in trainer.callbacks:  # type: ignore[attr-defined]
                if isinstance(cb, RecipeReport):
                    cb.notify(trainer)
        if raise_on_fail and status == "fail" and self.on_fail == "raise":
            raise RecipeCheckError(finding)
        return finding

    def record_all(
        self,
        trainer: Trainer | None,
        *groups: Iterable[tuple[Status, str, dict[str, Any]]],
        raise_on_fail: bool = True,
    ) -> None:
        """:meth:`record` each ``(status, message, numbers)`` verdict of ``groups``, in order."""
        for verdict in (v for group in groups for v in group):
            self.record(trainer, *verdict, raise_on_fail=raise_on_fail)

    def one_time_state(self, done: bool) -> dict[str, Any]:
        """Checkpoint state of a check that runs once: whether it ran, and its verdicts, so a resumed
        run shows them without running the check again."""
        return {"done": bool(done), "findings": [f.to_dict() for f in self.findings]}

    def load_one_time_state(self, state_dict: dict[str, Any]) -> bool:
        """Restore :meth:`one_time_state` (older checkpoints without it load as "not run"); returns ``done``."""
        self.findings = [Finding(**f) for f in state_dict.get("findings", [])]
        return bool(state_dict.get("done", False))

    def warn(self, message: str) -> None:
        """Warn once per message, on rank zero, with the :class:`RecipeWarning` category."""
        if message in self._warned:
            return
        self._warned.add(message)
        rank_zero_warn(message, category=RecipeWarning)

    # ------------------------------------------------------------------ skip rules
    @staticmethod
    def is_fitting(trainer: Trainer) -> bool:
        """True while ``trainer.fit`` drives the loop (not validate/test/predict)."""
        return trainer.state.fn == TrainerFn.FITTING

    def should_skip(self, trainer: Trainer) -> bool:
        """Skip when not fitting and during the sanity check.

        Lightning's LR and batch-size finders swap ``trainer.callbacks`` out while they run, so
        recipe callbacks never see their trial steps.
        """
        return trainer.sanity_checking or not self.is_fitting(trainer)

    # ------------------------------------------------------------------ data access
    @staticmethod
    def train_dataloader(trainer: Trainer) -> Any:
        """The training dataloader Lightning uses (set up by the time ``on_train_start`` runs)."""
        loader = trainer.train_dataloader
        if loader is None:
            trainer.fit_loop.setup_data()
            loader = trainer.train_dataloader
        return loader

    @staticmethod
    def first_dataloader(loader: Any) -> Any:
        """The first dataloader of a (possibly combined) loader collection."""
        from lightning.pytorch.utilities.combined_loader import CombinedLoader

        if isinstance(loader, CombinedLoader):
            loader = loader.iterables
        if isinstance(loader, dict):
            loader = next(iter(loader.values()), None)
        elif isinstance(loader, (list, tuple)):
            loader = loader[0] if loader else None
        return loader

    @staticmethod
    def val_dataloader(trainer: Trainer) -> Any:
        """The first validation dataloader, or ``None``."""
        loaders = trainer.val_dataloaders
        if loaders is None:
            try:
                trainer.fit_loop.epoch_loop.val_loop.setup_data()
            except Exception:
                return None
            loaders = trainer.val_dataloaders
        return RecipeCallback.first_dataloader(loaders)

    @staticmethod
    def loop_batch(trainer: Trainer, batch: Any) -> Any:
        """A batch read from a loader, made what ``training_step`` gets, as Lightning's loop makes it:
        the precision plugin's ``convert_input`` (``bf16-true`` casts the inputs), the module's
        ``on_before_batch_transfer``, then the strategy's ``batch_to_device`` (with
        ``transfer_batch_to_device`` and ``on_after_batch_transfer``)."""
        batch = trainer.precision_plugin.convert_input(batch)
        module = trainer.lightning_module
        before = getattr(module, "_on_before_batch_transfer", None)
        if callable(before):
            batch = before(batch, dataloader_idx=0)
        return trainer.strategy.batch_to_device(batch, trainer.strategy.root_device)

    @staticmethod
    def validate_keys(owner: str, input_key: KeySpec, target_key: KeySpec) -> None:
        validate_key_spec(input_key, owner, "input_key")
        validate_key_spec(target_key, owner, "target_key")

    @staticmethod
    def split(batch: Any, input_key: KeySpec, target_key: KeySpec, require_targets: bool = False):
        return split_batch(batch, input_key=input_key, target_key=target_key, require_targets=require_targets)

    # ------------------------------------------------------------------ distributed helpers
    @staticmethod
    def all_reduce_sum(trainer: Trainer, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all ranks (identity on one process). Call on every rank."""
        if trainer.world_size <= 1:
            return tensor
        device = trainer.strategy.root_device
        reduced = trainer.strategy.reduce(tensor.to(device), reduce_op="sum")
        return reduced.to(tensor.device, tensor.dtype)

    @staticmethod
    def all_reduce_max(trainer: Trainer, value: float) -> float:
        """Max of a scalar over all ranks (identity on one process). Call on every rank."""
        if trainer.world_size <= 1:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=trainer.strategy.root_device)
        gathered = trainer.strategy.all_gather(t)
        return float(gathered.max())

    @staticmethod
    def decide(trainer: Trainer, decision: bool, all_: bool = True) -> bool:
        """The same boolean on every rank: all ranks agree (``all_``) or any rank says so."""
        if trainer.world_size <= 1:
            return decision
        return bool(trainer.strategy.reduce_boolean_decision(decision, all=all_))

    def any_rank(self, trainer: Trainer) -> Callable[[bool], bool]:
        """``decide(flag) -> bool``: whether any rank says so, the same on every rank (call it on every rank)."""
        return functools.partial(self.decide, trainer, all_=False)

    def agreed(
        self,
        trainer: Trainer,
        compute: Callable[[], Any],
        what: str,
        catch: type[BaseException] | tuple[type[BaseException], ...] = Skip,
    ) -> tuple[Any, str]:
        """Run ``compute`` (local work, no collective inside) and agree with the other ranks.

        Returns ``(result, "")`` when every rank computed a result, else ``(None, reason)``: this
        rank's own reason (the :class:`~lightning_recipe.findings.Skip` it raised) or "another
        process could not <what>". Every rank takes the same branch after it, so the collectives
        that follow cannot hang. Call on every rank.
        """
        result, reason = None, ""
        try:
            result = compute()
        except catch as err:
            reason = str(err)
        if self.decide(trainer, result is not None, all_=True):
            return result, ""
        return None, reason or f"another process could not {what}; see its warning"

    # ------------------------------------------------------------------ lifecycle shared by all
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        recipe_logging.drain()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.__dict__.pop("_state_key", None)
        # runs before the loggers are finalized, also after an exception: no figure may be left
        # queued for a closed writer (the rendering process is kept for the next fit)
        recipe_logging.drain()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.__dict__.pop("_state_key", None)
        for hook in PER_BATCH_HOOKS:  # hooks retired in the last fit
            self.__dict__.pop(hook, None)
        if stage == "fit":
            self.findings = []
            self._broken = False
            self._announced = False
            self.cost.reset()
