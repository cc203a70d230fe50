"""Shared test helpers: reading TensorBoard event files back, real data, tiny models, trainers."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

# ---------------------------------------------------------------------- event files
_KEEP_ALL = {
    ea.COMPRESSED_HISTOGRAMS: 0,
    ea.IMAGES: 0,
    ea.AUDIO: 0,
    ea.SCALARS: 0,
    ea.HISTOGRAMS: 0,
    ea.TENSORS: 0,
}


class Events:
    """Everything a TensorBoard run folder holds, read with TensorBoard's own EventAccumulator."""

    def __init__(self, run_dir: str) -> None:
        self.acc = ea.EventAccumulator(str(run_dir), size_guidance=_KEEP_ALL)
        self.acc.Reload()
        self.tags = self.acc.Tags()

    def scalars(self, tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in self.acc.Scalars(tag)]

    def has_scalar(self, tag: str) -> bool:
        return tag in self.tags["scalars"]

    def images(self, tag: str) -> list[tuple[int, int, int, bytes]]:
        """(step, width, height, png bytes) per logged image."""
        return [(e.step, e.width, e.height, e.encoded_image_string) for e in self.acc.Images(tag)]

    def has_image(self, tag: str) -> bool:
        return tag in self.tags["images"]

    def texts(self, tag: str) -> list[tuple[int, str]]:
        key = tag if tag.endswith("/text_summary") else f"{tag}/text_summary"
        return [
            (e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode()) for e in self.acc.Tensors(key)
        ]

    def has_text(self, tag: str) -> bool:
        key = tag if tag.endswith("/text_summary") else f"{tag}/text_summary"
        return key in self.tags["tensors"]

    def histograms(self, tag: str) -> list[Any]:
        return list(self.acc.Histograms(tag))

    def all_tags(self) -> list[str]:
        out: list[str] = []
        for kind in ("scalars", "images", "histograms", "tensors"):
            out.extend(self.tags.get(kind, []))
        return sorted(out)


def read_events(logger_or_dir: Any) -> Events:
    """Flush a TensorBoardLogger (if given one) and read its run folder."""
    if isinstance(logger_or_dir, TensorBoardLogger):
        logger_or_dir.experiment.flush()
        logger_or_dir = logger_or_dir.log_dir
    return Events(str(logger_or_dir))


def png_shape(png: bytes) -> tuple[int, int, int]:
    """(height, width, channels) of a PNG."""
    import io

    from matplotlib.image import imread

    arr = imread(io.BytesIO(png), format="png")
    return arr.shape if arr.ndim == 3 else (*arr.shape, 1)


# ---------------------------------------------------------------------- data (scikit-learn ships it)
@functools.cache
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """1,797 8x8 digit images scaled to [0, 1] (N, 1, 8, 8) float32, labels int64 0-9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return x, d.target.astype(np.int64)


@functools.cache
def breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """569 x 30 standardised features, labels 0/1 (63% positive)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = d.data.astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    return x, d.target.astype(np.int64)


@functools.cache
def diabetes_arrays() -> tuple[np.ndarray, np.ndarray]:
    """442 x 10 features (already centred and scaled by scikit-learn), target ~152 +- 77."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = d.data.astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    return x, d.target.astype(np.float32)


def imbalanced_breast_cancer(ratio: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Breast cancer with positives (benign, label 1) subsampled to 1:``ratio`` against negatives."""
    x, y = breast_cancer_arrays()
    rng = np.random.default_rng(seed)
    neg = np.flatnonzero(y == 0)
    pos = rng.choice(np.flatnonzero(y == 1), size=max(1, len(neg) // ratio), replace=False)
    idx = np.sort(np.concatenate([neg, pos]))
    return x[idx], y[idx]


def sine_sequences(n: int = 128, length: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Next-step prediction on sine waves: inputs ``(n, length)`` and targets shifted by one step.

    Random amplitude (0.5 to 1.5), frequency and phase per sequence; float32, target std ~0.7.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)
    amp = rng.uniform(0.5, 1.5, (n, 1))
    freq = rng.uniform(0.2, 0.6, (n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1))
    s = (amp * np.sin(freq * t + phase)).astype(np.float32)
    return s[:, :-1], s[:, 1:]


def loader(x: Any, y: Any = None, batch_size: int = 32, shuffle: bool = False, **kw: Any) -> DataLoader:
    tensors = [torch.as_tensor(x)] + ([] if y is None else [torch.as_tensor(y)])
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle, **kw)


# ---------------------------------------------------------------------- models
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: dict[str, LossFn] = {
    "ce": lambda out, y: F.cross_entropy(out, y),
    "bce": lambda out, y: F.binary_cross_entropy_with_logits(out.reshape(y.shape), y.float()),
    "mse": lambda out, y: F.mse_loss(out.reshape(y.shape), y),
    "l1": lambda out, y: F.l1_loss(out.reshape(y.shape), y),
    "huber": lambda out, y: F.huber_loss(out.reshape(y.shape), y),
}


def mlp(in_features: int, out_features: int, hidden: int = 32, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, out_features))
    return nn.Sequential(*layers)


def small_cnn(num_classes: int = 10, channels: int = 8, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(channels * 16, num_classes))
    return nn.Sequential(*layers)


class CausalConv1d(nn.Module):
    """A small causal 1-D ConvNet regressor: ``(N, T)`` in, ``(N, T)`` out (the last Conv1d is the head)."""

    def __init__(self, channels: int = 16, kernel_size: int = 3) -> None:
        super().__init__()
        self.pad = kernel_size - 1
        self.conv = nn.Conv1d(1, channels, kernel_size)
        self.head = nn.Conv1d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(F.pad(x.unsqueeze(1), (self.pad, 0))))  # left padding only: causal
        return self.head(h).squeeze(1)


class RecurrentRegressor(nn.Module):
    """A GRU (or LSTM) with a Linear head: ``(N, T)`` in, ``(N, T, 1)`` out."""

    def __init__(self, hidden: int = 4, cell: str = "gru") -> None:
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x.unsqueeze(-1))
        return self.head(h)


class LitModel(LightningModule):
    """A plain LightningModule around ``net`` with a named loss; logs ``train_loss`` and ``val_loss``."""

    def __init__(
        self,
        net: nn.Module,
        loss: str | LossFn = "ce",
        lr: float = 1e-2,
        optimizer: str = "adam",
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
        self.lr = lr
        self.optimizer_name = optimizer
        self.scheduler_factory = scheduler
        self.train_losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        loss = self.loss_fn(self(x), y)
        self.train_losses.append(float(loss.detach()))
        self.log("train_loss", loss, prog_bar=False)
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        self.log("val_loss", self.loss_fn(self(x), y), prog_bar=False)

    def configure_optimizers(self) -> Any:
        if self.optimizer_name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        else:
            opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(opt)
        if isinstance(sched, dict):
            return {"optimizer": opt, "lr_scheduler": sched}
        return {"optimizer": opt, "lr_scheduler": sched}


class ManualGAN(LitModel):
    """Manual optimization with two optimizers: ``net`` is a discriminator whose one logit means
    real/fake (not a class), ``gen`` a generator. With ``classes`` it is an ordinary classifier
    optimized by hand instead (the twin whose loss is the task loss)."""

    def __init__(self, features: int, classes: int | None = None) -> None:
        super().__init__(mlp(features, classes or 1))
        self.gen = nn.Linear(4, features)
        self.classes = classes
        self.automatic_optimization = False

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch[0].flatten(1), batch[1]
        opt_g, opt_d = self.optimizers()
        if self.classes:
            loss = F.cross_entropy(self(x), y)
            opt_d.zero_grad()
            self.manual_backward(loss)
            opt_d.step()
            return loss
        fake = self.gen(torch.randn(x.shape[0], 4))
        ones, zeros = torch.ones(x.shape[0], 1), torch.zeros(x.shape[0], 1)
        d_loss = F.binary_cross_entropy_with_logits(self(x), ones)
        d_loss = d_loss + F.binary_cross_entropy_with_logits(self(fake.detach()), zeros)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(self(fake), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        return None

    def configure_optimizers(self) -> Any:
        return [torch.optim.Adam(self.gen.parameters(), 1e-3), torch.optim.Adam(self.net.parameters(), 1e-3)]


# ---------------------------------------------------------------------- trainers
def make_trainer(
    tmp_path: Any, callbacks: Sequence[Any] = (), logger: bool | Any = True, **kwargs: Any
) -> Trainer:
    """A quiet CPU Trainer writing TensorBoard logs under ``tmp_path`` (version 0)."""
    if logger is True:
        logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    defaults: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        max_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        logger=logger,
        callbacks=list(callbacks),
        deterministic=False,
        log_every_n_steps=1,
    )
    defaults.update(kwargs)
    return Trainer(**defaults)


def fit(
    tmp_path: Any,
    model: LightningModule,
    callbacks: Callback | Sequence[Callback] = (),
    data: Any = None,
    datamodule: Any = None,
    seed: int | None = 0,
    quiet: bool = False,
    **trainer_kwargs: Any,
) -> Trainer:
    """The one ``fit`` of the test files: seed, a quiet ``make_trainer``, ``trainer.fit``; returns the trainer.

    Args:
        callbacks: one callback or several.
        data: the train dataloader (or ``None`` when the model or ``datamodule`` brings its own).
        seed: ``torch.manual_seed`` before the trainer is built (``None``: leave the RNG alone).
        quiet: silence warnings (recipe warnings included) during fit.
    """
    if seed is not None:
        torch.manual_seed(seed)
    cbs = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
    trainer = make_trainer(tmp_path, cbs, **trainer_kwargs)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        if datamodule is not None:
            trainer.fit(model, datamodule=datamodule)
        else:
            trainer.fit(model, data)
    return trainer


def digits_loader(n: int | None = None, scale: float = 1.0, batch_size: int = 32, **kw: Any) -> DataLoader:
    """The first ``n`` digits (8x8 images, 10 classes) as a loader; ``scale`` multiplies the pixels."""
    x, y = digits_arrays()
    if n is not None:
        x, y = x[:n], y[:n]
    return loader(x * scale if scale != 1.0 else x, y, batch_size=batch_size, **kw)


def final_params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs"


class DumpFindings(Callback):
    """Write each rank's findings to ``directory/rank{r}.json`` at the end of fit (DDP tests: state
    set inside spawned or forked workers does not come back to the test process)."""

    def __init__(self, directory: Any, *checks: Any) -> None:
        self.directory = Path(directory)
        self.checks = checks

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lightning_recipe import RecipeReport

        sources = self.checks or [cb for cb in trainer.callbacks if not isinstance(cb, RecipeReport)]
        found = [f.to_dict() for cb in sources for f in getattr(cb, "findings", [])]
        (self.directory / f"rank{trainer.global_rank}.json").write_text(json.dumps(found))


def read_rank_findings(directory: Any, world_size: int = 2) -> list[list[dict[str, Any]]]:
    """What :class:`DumpFindings` wrote, one list per rank."""
    return [json.loads((Path(directory) / f"rank{r}.json").read_text()) for r in range(world_size)]
