"""PredictionDynamics: the recipe's "visualize prediction dynamics"."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import IterableDataset
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_choice, check_positive_int
from lightning_recipe.core.batches import KeySpec, first_tensor, map_tensors
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import check_task_argument, infer_task
from lightning_recipe.plots.style import is_image_like, new_figure, to_display_images

__all__ = ["PredictionDynamics", "predictions_for"]

_PREFIX = "recipe/prediction_dynamics/"
Source = Literal["val", "train"]


def _output_tensor(output: Any) -> torch.Tensor | None:
    """The logits/predictions in a model output: a tensor, ``.logits``, ``["logits"]`` or the first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return first_tensor(output)


def _one_line(err: Exception, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def predictions_for(
    task: str, output: torch.Tensor, targets: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample numbers for the figures: ``(trajectory_value, predictions, predicted)``.

    * multiclass: the softmax probability of the true class (averaged over positions for dense
      outputs ``(N, C, ...)``), the class probabilities ``(N, C)``, the argmax class;
    * binary: the probability given to the true label, ``p(1)`` as ``(N, 1)``, the 0/1 decision;
    * multilabel: the mean probability given to the true value of each label, ``p`` as ``(N, K)``,
      the number of labels predicted right;
    * regression: the first output, all outputs ``(N, K)``, the first output again.

    Example:
        >>> value, probs, pred = predictions_for("multiclass", torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        >>> value.tolist(), probs.tolist(), pred.tolist()
        ([0.5], [[0.5, 0.5]], [0])
    """
    out = output.detach().float().cpu()
    y = targets.detach().cpu()
    n = out.shape[0]
    if task == "multiclass":
        if out.dim() == 2:
            probs = torch.softmax(out, dim=1)
            y = y.long().reshape(n)
            valid = (y >= 0) & (y < probs.shape[1])  # ignore_index (-100) and other out-of-range labels
            value = probs.gather(1, y.clamp(0, probs.shape[1] - 1).reshape(n, 1)).reshape(n)
            value = torch.where(valid, value, torch.full_like(value, math.nan))
            return value.numpy(), probs.numpy(), probs.argmax(1).numpy()
        if tuple(y.shape) == tuple(out.shape[:-1]) and tuple(y.shape) != (n, *out.shape[2:]):
            out = out.movedim(-1, 1)  # (N, T, C) logits: classes last
        probs = torch.softmax(out, dim=1)
        k = probs.shape[1]
        y = y.long()
        # positions labelled ignore_index (-100, padding) or out of range take no part in the means
        valid = ((y >= 0) & (y < k)).reshape(n, -1).float()
        picked = probs.gather(1, y.clamp(0, k - 1).unsqueeze(1)).reshape(n, -1)
        count = valid.sum(1)
        value = (picked * valid).sum(1) / count.clamp_min(1)
        value = torch.where(count > 0, value, torch.full_like(value, math.nan))
        flat = probs.reshape(n, k, -1)
        mean_probs = (flat * valid.unsqueeze(1)).sum(2) / count.clamp_min(1).unsqueeze(1)
        mean_probs = torch.where((count > 0).unsqueeze(1), mean_probs, flat.mean(2))
        return value.numpy(), mean_probs.numpy(), mean_probs.argmax(1).numpy()
    if task == "binary":
        p = torch.sigmoid(out.reshape(n, -1)[:, 0])
        t = y.reshape(n, -1)[:, 0].float()
        value = torch.where(t > 0.5, p, 1 - p)
        return value.numpy(), p.reshape(n, 1).numpy(), (p > 0.5).long().numpy()
    if task == "multilabel":
        p = torch.sigmoid(out.reshape(n, -1))
        t = y.reshape(n, -1).float()
        right = torch.where(t > 0.5, p, 1 - p)
        return right.mean(1).numpy(), p.numpy(), ((p > 0.5).float() == t).sum(1).numpy()
    flat = out.reshape(n, -1)
    return flat[:, 0].numpy(), flat.numpy(), flat[:, 0].numpy()


class PredictionDynamics(RecipeCallback):
    """Plot the model's predictions on one fixed batch over the course of training.

    Recipe, "visualize prediction dynamics": *"I like to visualize model predictions on a fixed
    test batch during the course of training. The dynamics of how these predictions move will
    give you incredibly good intuition for how the training progresses [...] Very low or very
    high learning rates are also easily noticeable in the amount of jitter."*

    At the start of fit, ``num_samples`` samples spread evenly over the validation dataset
    (``source="val"``; the training dataset when there is none, or with ``source="train"``) are
    collated once and kept on the CPU, in the checkpoint too, so a resumed run shows the same
    samples. At step 0 and every ``every_n_train_steps`` optimizer steps the model runs on them
    in eval mode, under ``no_grad``, in the trainer's precision context, inside the state guard
    (no RNG, mode or buffer is disturbed). TensorBoard, under ``recipe/prediction_dynamics/``:

    * ``trajectories`` (Images): one small panel per sample, with its thumbnail for image inputs:
      the probability of the true class over steps (classification; green when the current
      prediction is right, red when wrong), or the prediction against a dashed target line
      (regression). A struggling net wiggles; too high a learning rate jitters; too low a one crawls.
    * ``predictions`` (Images): the current predicted distribution (a samples x classes heatmap
      with the true class boxed; bars of ``p(1)`` for binary) or prediction vs. target (regression).
    * ``jitter`` (Scalars): mean absolute change of the predictions (probabilities, or raw outputs
      for regression) since the previous log; ``mean_true_prob`` (classification) or
      ``mean_abs_error`` (regression).

    Rank zero only (other ranks do nothing). Figures render on a background thread.

    Args:
        num_samples: how many samples the fixed batch holds (panels in the figure).
        every_n_train_steps: log at step 0 and every this many optimizer steps.
        source: ``"val"`` (falls back to the training data) or ``"train"``.
        task: ``"auto"`` (inferred from targets and outputs), ``"multiclass"``, ``"binary"``,
            ``"multilabel"`` or ``"regression"``.
        input_key: where the inputs are in a batch (dict key, position or callable).
        target_key: where the targets are.
        class_names: names for class indices, shown in the panel titles.
        forward: ``callable(pl_module, inputs) -> output`` when ``pl_module(inputs)`` is not how the
            model is called.

    Attributes:
        findings: the findings of the current run (``skipped`` when it cannot run).
        task: the task it plots (after the first log).
        steps: the global steps logged so far.
        jitter: the jitter at each logged step after the first.

    Example:
        >>> import torch, warnings
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> class Net(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layer = torch.nn.Linear(4, 3)
        ...     def forward(self, x):
        ...         return self.layer(x)
        ...     def training_step(self, batch, batch_idx):
        ...         return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> data = DataLoader(TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,))), batch_size=8)
        >>> dynamics = PredictionDynamics(num_samples=4, every_n_train_steps=2)
        >>> trainer = Trainer(max_steps=4, logger=False, callbacks=[dynamics], enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Net(), data)
        >>> dynamics.task, dynamics.steps, len(dynamics.jitter)
        ('multiclass', [0, 2, 4], 2)
    """


    def __init__(
        self,
        num_samples: int = 16,
        every_n_train_steps: int = 50,
        source: Source = "val",
        task: str = "auto",
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        class_names: Sequence[str] | None = None,
        forward: Callable[[LightningModule, Any], Any] | None = None,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = type(self).__name__
        check_positive_int(owner, "num_samples", num_samples)
        if num_samples > 64:
            raise ValueError(
                f"{owner}(num_samples={num_samples!r}): at most 64 samples fit in a readable figure."
            )
        check_positive_int(owner, "every_n_train_steps", every_n_train_steps)
        check_choice(owner, "source", source, ("val", "train"))
        check_task_argument(task, owner)
        self.validate_keys(owner, input_key, target_key)
        if class_names is not None and (
            isinstance(class_names, str) or not isinstance(class_names, Sequence)
        ):
            raise TypeError(
                f"{owner}(class_names={class_names!r}): pass a list of names, one per class index."
            )
        if forward is not None and not callable(forward):
            raise TypeError(f"{owner}(forward={forward!r}): pass a callable(pl_module, inputs) or None.")
        self.num_samples = num_samples
        self.every_n_train_steps = every_n_train_steps
        self.source = source
        self.task_argument = task
        self.input_key = input_key
        self.target_key = target_key
        self.class_names = list(class_names) if class_names is not None else None
        self.forward = forward
        self.task: str | None = None
        self.steps: list[int] = []
        self.jitter: list[float] = []
        self._values: list[list[float]] = []
        self._inputs: Any = None
        self._targets: torch.Tensor | None = None
        self._last_pred: torch.Tensor | None = None
        self._source_used: str | None = None
        self._disabled = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(source=self.source, num_samples=self.num_samples)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self.task = None
            self.steps, self.jitter, self._values = [], [], []
            self._inputs = self._targets = self._last_pred = None
            self._source_used = None
            self._disabled = False

    # ------------------------------------------------------------------ hooks
    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer) or not trainer.is_global_zero:
            return
        if self._inputs is None:
            self._take_batch(trainer, pl_module)
        if trainer.global_step == 0 and not self.steps:
            self._log(trainer, pl_module, 0)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_train_steps or (self.steps and self.steps[-1] == step):
            return
        if self._disabled or not trainer.is_global_zero or self.should_skip(trainer):
            return
        self._log(trainer, pl_module, int(step))

    # ------------------------------------------------------------------ the fixed batch
    def _take_batch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        with preserved_state(pl_module):
            loaders: list[tuple[str, Any]] = []
            if self.source == "val":
                loaders.append(("val", self.val_dataloader(trainer)))
            loaders.append(("train", self.first_dataloader(self.train_dataloader(trainer))))
            batch = None
            for name, loader in loaders:
                if loader is None:
                    continue
                batch = self._collate(loader)
                if batch is not None:
                    self._source_used = name
                    break
        if batch is None:
            self._disabled = True
            self.record(
                trainer,
                "skipped",
                "found no data to take a fixed batch from (no validation or training samples).",
            )
            return
        try:
            parts = self.split(batch, self.input_key, self.target_key, require_targets=True)
        except ValueError as err:
            self._disabled = True
            self.record(trainer, "skipped", f"skipped, because {err}")
            return
        n = self.num_samples
        self._inputs = map_tensors(parts.inputs, lambda t: t[:n].detach().cpu().clone())
        self._targets = parts.targets[:n].detach().cpu().clone()

    def _collate(self, loader: Any) -> Any:
        """``num_samples`` samples spread evenly over the loader's dataset, collated as the loader would."""
        from torch.utils.data import default_collate

        dataset = getattr(loader, "dataset", None)
        indexable = (
            dataset is not None
            and not isinstance(dataset, IterableDataset)
            and hasattr(dataset, "__getitem__")
            and hasattr(dataset, "__len__")
            and getattr(loader, "batch_size", 1) is not None
        )
        if indexable and len(dataset) > 0:
            idx = np.unique(
                np.linspace(0, len(dataset) - 1, min(self.num_samples, len(dataset))).round().astype(int)
            )
            collate = getattr(loader, "collate_fn", None) or default_collate
            return collate([dataset[int(i)] for i in idx])
        for batch in loader:  # iterable datasets: the first batch
            return batch
        return None

    # ------------------------------------------------------------------ one log
    def _predict(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor | None:
        device = pl_module.device
        inputs = map_tensors(self._inputs, lambda t: t.to(device))
        try:
            context = trainer.precision_plugin.forward_context()
        except Exception:  # pragma: no cover
            context = nullcontext()
        try:
            with preserved_state(pl_module), torch.no_grad(), context:
                pl_module.eval()
                output = self.forward(pl_module, inputs) if self.forward is not None else pl_module(inputs)
        except Exception as err:
            self._disabled = True
            shape = tuple(t.shape) if isinstance(t := first_tensor(inputs), torch.Tensor) else None
            how = "forward=(pl_module, inputs)" if self.forward is not None else "pl_module(inputs)"
            self.record(
                trainer,
                "skipped",
                f"skipped, because the model could not be called as {how} on the fixed batch's inputs "
                f"{shape} ({type(err).__name__}: {_one_line(err)}); pass `forward=` "
                "(a callable(pl_module, inputs) returning the predictions).",
                {"error": type(err).__name__},
            )
            self.warn(f"{self.name}: {self.findings[-1].message}")
            return None
        out = _output_tensor(output)
        return None if out is None else out.detach().float().cpu()

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        if self._disabled or self._inputs is None or self._targets is None:
            return
        out = self._predict(trainer, pl_module)
        if self._disabled:
            return
        if out is None or out.dim() == 0 or out.shape[0] != self._targets.shape[0]:
            self._disabled = True
            shape = None if out is None else tuple(out.shape)
            self.record(
                trainer,
                "skipped",
                f"the model's output {shape} has no row per sample of the fixed batch "
                f"({self._targets.shape[0]} samples); pass `forward=` (a callable(pl_module, inputs)).",
            )
            return
        if self.task is None:
            try:
                self.task = infer_task(self._targets, out, self.task_argument)
            except ValueError as err:
                self._disabled = True
                self.record(trainer, "skipped", f"skipped, because {err}")
                return
        value, preds, decided = predictions_for(self.task, out, self._targets)
        pred_tensor = torch.from_numpy(np.ascontiguousarray(preds, dtype=np.float32))
        scalars: dict[str, float] = {}
        if self._last_pred is not None and self._last_pred.shape == pred_tensor.shape:
            jitter = float((pred_tensor - self._last_pred).abs().mean())
            self.jitter.append(jitter)
            scalars[_PREFIX + "jitter"] = jitter
        self._last_pred = pred_tensor
        self.steps.append(step)
        self._values.append([float(v) for v in value])
        targets = self._targets
        if self.task == "regression":
            t = targets.reshape(targets.shape[0], -1)[:, 0].float().numpy()
            scalars[_PREFIX + "mean_abs_error"] = float(np.abs(value - t).mean())
        else:
            if np.isfinite(value).any():  # samples whose labels are all ignore_index have no value
                scalars[_PREFIX + "mean_true_prob"] = float(np.nanmean(value))
        recipe_logging.log_scalars(trainer, scalars, step)
        self._submit_figures(trainer, step, preds, decided)

    # ------------------------------------------------------------------ figures
    def _submit_figures(self, trainer: Trainer, step: int, preds: np.ndarray, decided: np.ndarray) -> None:
        task = str(self.task)
        steps = np.asarray(self.steps, dtype=np.float64)
        values = np.asarray(self._values, dtype=np.float64)  # (T, N)
        targets = self._targets.detach().float().numpy().copy() if self._targets is not None else None
        x = self._inputs if isinstance(self._inputs, torch.Tensor) else None
        thumbs = (
            to_display_images(x.float().numpy())
            if x is not None and x.is_floating_point() and is_image_like(tuple(x.shape))
            else None
        )
        names = list(self.class_names) if self.class_names else None
        preds, decided = preds.copy(), decided.copy()

        def trajectories() -> Any:
            return _trajectory_figure(task, steps, values, targets, preds, decided, thumbs, names, step)

        def predictions() -> Any:
            return _predictions_figure(task, targets, preds, names, step)

        recipe_logging.log_figure(trainer, _PREFIX + "trajectories", trajectories, step)
        recipe_logging.log_figure(trainer, _PREFIX + "predictions", predictions, step)

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "inputs": self._inputs,
            "targets": self._targets,
            "task": self.task,
            "steps": list(self.steps),
            "values": [list(v) for v in self._values],
            "jitter": list(self.jitter),
            "last_pred": self._last_pred,
            "source_used": self._source_used,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._inputs = state_dict.get("inputs")
        self._targets = state_dict.get("targets")
        self.task = state_dict.get("task") if self.task_argument == "auto" else self.task_argument
        self.steps = list(state_dict.get("steps", []))
        self._values = [list(v) for v in state_dict.get("values", [])]
        self.jitter = list(state_dict.get("jitter", []))
        self._last_pred = state_dict.get("last_pred")
        self._source_used = state_dict.get("source_used")


# ---------------------------------------------------------------------- figure builders (numpy only)
def _class_name(i: int, names: list[str] | None) -> str:
    return str(names[i]) if names is not None and 0 <= i < len(names) else str(i)


def _panel_title(
    task: str, i: int, targets: np.ndarray, preds: np.ndarray, decided: np.ndarray, names: list[str] | None
) -> tuple[str, bool]:
    if task == "multiclass":
        y = int(targets[i]) if targets.ndim == 1 else -1
        p = int(decided[i])
        return f"y={_class_name(y, names)} pred={_class_name(p, names)} ({preds[i, p]:.2f})", p == y
    if task == "binary":
        y = round(float(targets.reshape(len(targets), -1)[i, 0]))
        return f"y={y} p(1)={preds[i, 0]:.2f}", int(decided[i]) == y
    if task == "multilabel":
        k = preds.shape[1]
        return f"{int(decided[i])}/{k} labels right", int(decided[i]) == k
    t = float(targets.reshape(len(targets), -1)[i, 0])
    return f"y={t:.3g} pred={preds[i, 0]:.3g}", True


def _trajectory_figure(
    task: str,
    steps: np.ndarray,
    values: np.ndarray,
    targets: np.ndarray | None,
    preds: np.ndarray,
    decided: np.ndarray,
    thumbs: np.ndarray | None,
    names: list[str] | None,
    step: int,
) -> Any:
    """Per-sample trajectories as small multiples drawn on ONE axis (a figure with one axis per
    panel costs about ten times as much to render)."""
    from matplotlib.patches import Rectangle

    n = values.shape[1]
    ncols = 4 if n > 6 else max(1, n)
    nrows = math.ceil(n / ncols)
    regression = task == "regression"
    ylabel = {
        "multiclass": "p(true class)",
        "binary": "p(true label)",
        "multilabel": "mean p(true labels)",
    }.get(task, "prediction")
    # cell layout in axis units: [thumbnail | plot], a title band above each plot
    tw = 0.8 if thumbs is not None else 0.35  # room for the thumbnail, or for the y labels
    pw, ph, gap_x, band, gap_y = 2.2, 1.0, 0.35, 0.32, 0.18
    cell_w, cell_h = tw + pw + gap_x, ph + band + gap_y
    panel_w_in, panel_h_in = 0.72 * cell_w, 0.72 * cell_h
    fig = new_figure(ncols * panel_w_in + 0.3, nrows * panel_h_in + 0.55, dpi=80)
    ax = fig.add_axes((0.01, 0.04, 0.98, 1 - 0.04 - 0.5 / (nrows * panel_h_in + 0.55)))
    ax.set_xlim(-0.05, ncols * cell_w)
    ax.set_ylim(-nrows * cell_h, 0.05)
    ax.set_axis_off()
    s0, s1 = float(steps[0]), float(steps[-1])
    span = (s1 - s0) or 1.0
    xs = (steps - s0) / span
    for i in range(n):
        r, c = divmod(i, ncols)
        left, top = c * cell_w, -r * cell_h - band
        x0, y0 = left + tw, top - ph  # plot box: [x0, x0 + pw] x [y0, y0 + ph]
        if thumbs is not None:
            size = min(tw - 0.08, ph)
            ax.imshow(
                thumbs[i],
                extent=(left, left + size, y0 + (ph - size) / 2, y0 + (ph + size) / 2),
                interpolation="nearest",
                aspect="auto",
                zorder=2,
            )
        if task == "multiclass" and targets is not None and targets.ndim > 1:  # per-position classes
            last = values[-1, i]
            labelled = bool(np.isfinite(last))
            title = f"#{i} mean p(true)={last:.2f}" if labelled else f"#{i}: no labelled position"
            right = labelled and last > 0.5
        else:
            title, right = _panel_title(
                task, i, targets if targets is not None else np.zeros(n), preds, decided, names
            )
        color = "#1f77b4" if regression else ("#2ca02c" if right else "#d62728")
        v = values[:, i].astype(np.float64)
        if regression:
            finite = v[np.isfinite(v)]
            ref = [] if targets is None else [float(targets.reshape(n, -1)[i, 0])]
            pool = np.concatenate([finite, np.asarray(ref)]) if finite.size or ref else np.zeros(1)
            lo, hi = float(pool.min()), float(pool.max())
            pad = 0.08 * ((hi - lo) or abs(hi) or 1.0)
            lo, hi = lo - pad, hi + pad
            for ref_value in ref:
                yy = y0 + ph * (ref_value - lo) / (hi - lo)
                ax.plot([x0, x0 + pw], [yy, yy], color="k", ls="--", lw=0.8, zorder=3)
            ax.text(x0 - 0.04, y0, f"{lo:.3g}", fontsize=5.5, ha="right", va="bottom", color="0.35")
            ax.text(x0 - 0.04, y0 + ph, f"{hi:.3g}", fontsize=5.5, ha="right", va="top", color="0.35")
        else:
            lo, hi = -0.03, 1.03
            mid = y0 + ph * (0.5 - lo) / (hi - lo)
            ax.plot([x0, x0 + pw], [mid, mid], color="0.85", lw=0.6, zorder=1)
            if c == 0 or thumbs is not None:
                for value, text in ((0.0, "0"), (1.0, "1")):
                    ax.text(
                        x0 - 0.04,
                        y0 + ph * (value - lo) / (hi - lo),
                        text,
                        fontsize=5.5,
                        ha="right",
                        va="center",
                        color="0.35",
                    )
        ax.add_patch(Rectangle((x0, y0), pw, ph, fill=False, lw=0.6, edgecolor="0.6", zorder=1))
        ys = y0 + ph * (np.clip(v, lo, hi) - lo) / (hi - lo)
        ax.plot(x0 + pw * xs, ys, color=color, lw=1.3, marker="o" if len(xs) < 12 else None, ms=2.5, zorder=4)
        ax.text(
            x0 + pw / 2,
            top + 0.04,
            title,
            fontsize=7,
            ha="center",
            va="bottom",
            color="k" if regression else color,
        )
        if r == nrows - 1 or i + ncols >= n:
            ax.text(x0, y0 - 0.04, f"{int(s0)}", fontsize=5.5, ha="left", va="top", color="0.35")
            ax.text(x0 + pw, y0 - 0.04, f"{int(s1)}", fontsize=5.5, ha="right", va="top", color="0.35")
    fig.suptitle(f"{ylabel} over training steps (fixed batch), step {step}", fontsize=8.5)
    return fig


def _predictions_figure(
    task: str, targets: np.ndarray | None, preds: np.ndarray, names: list[str] | None, step: int
) -> Any:
    n = preds.shape[0]
    if task == "regression":
        fig = new_figure(3.4, 3.0, dpi=80)
        ax = fig.add_subplot()
        t = targets.reshape(n, -1)[:, 0] if targets is not None else np.zeros(n)
        p = preds[:, 0]
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", ls="--", lw=0.9, label="y = target")
        ax.scatter(t, p, s=18, color="#1f77b4", zorder=3)
        ax.set_xlabel("target", fontsize=8)
        ax.set_ylabel("prediction", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        ax.set_title(f"prediction vs target, step {step}", fontsize=9)
        fig.tight_layout(pad=0.4)
        return fig
    if task == "binary":
        fig = new_figure(3.4, 0.6 + 0.16 * n, dpi=80)
        ax = fig.add_subplot()
        y = targets.reshape(n, -1)[:, 0] if targets is not None else np.zeros(n)
        colors = ["#2ca02c" if (p > 0.5) == (t > 0.5) else "#d62728" for p, t in zip(preds[:, 0], y)]
        ax.barh(np.arange(n), preds[:, 0], color=colors)
        ax.axvline(0.5, color="0.5", lw=0.8, ls="--")
        ax.set_yticks(np.arange(n), [f"#{i} y={round(float(t))}" for i, t in enumerate(y)], fontsize=6.5)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("p(1)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"predicted p(1), step {step}", fontsize=9)
        fig.tight_layout(pad=0.4)
        return fig
    # multiclass / multilabel: samples x classes heatmap, true classes boxed
    k = preds.shape[1]
    if task == "multiclass" and targets is not None and targets.ndim == 1:
        truth = np.zeros_like(preds, dtype=bool)
        labelled = (targets >= 0) & (targets < k)  # not ignore_index
        truth[np.arange(n)[labelled], targets[labelled].astype(int)] = True
    elif targets is not None and targets.reshape(n, -1).shape[1] == k:
        truth = targets.reshape(n, -1) > 0.5
    else:
        truth = np.zeros_like(preds, dtype=bool)
    cols = np.arange(k)
    if k > 30:  # keep the classes that matter: true ones and the most probable ones
        score = preds.max(axis=0) + truth.any(axis=0)
        cols = np.sort(np.argsort(-score)[:30])
    shown, mark = preds[:, cols], truth[:, cols]
    fig = new_figure(1.3 + 0.24 * len(cols), 0.9 + 0.2 * n, dpi=80)
    ax = fig.add_subplot()
    im = ax.imshow(shown, vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
    rows, cs = np.nonzero(mark)
    ax.scatter(cs, rows, marker="s", s=42, facecolors="none", edgecolors="#ff4040", linewidths=1.2)
    ax.set_xticks(
        np.arange(len(cols)),
        [_class_name(int(c), names) for c in cols],
        fontsize=6.5,
        rotation=90 if names else 0,
    )
    ax.set_yticks(np.arange(n), [f"#{i}" for i in range(n)], fontsize=6.5)
    ax.set_xlabel("class (red box: true)" if task == "multiclass" else "label (red box: true)", fontsize=7.5)
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, ticks=[0, 0.5, 1])
    cbar.ax.tick_params(labelsize=6)
    ax.set_title(f"predicted probabilities, step {step}", fontsize=8.5)
    fig.subplots_adjust(
        left=0.14, right=0.97, bottom=0.5 / fig.get_figheight() + 0.02, top=1 - 0.3 / fig.get_figheight()
    )
    return fig
