"""A tiny GPT-2 language model on synthetic sequences, with the whole recipe and zero configuration.

The model is ``transformers``' ``GPT2LMHeadModel`` built from a config (random init, nothing is
downloaded), wrapped the way Hugging Face users write Lightning modules: dict batches
(``input_ids``, ``attention_mask``, ``labels``), ``forward(self, **batch)`` returning the model's
output object, the loss from ``output.loss`` (GPT-2 shifts the labels itself: position t predicts
token t+1), AdamW with ``get_linear_schedule_with_warmup`` stepped per step. The data are
arithmetic sequences (``x[t+1] = x[t] + step`` modulo the vocabulary), right-padded, with padding
labels set to -100. Nothing tells the callbacks how to call the model or what the task is.

    pip install transformers                                  # no torch of its own is needed
    python examples/language_model.py --logdir lightning_logs  # well under a minute on a laptop CPU
    make tensorboard                                          # or .venv/bin/tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset

from lightning_recipe import recipe_callbacks
from lightning_recipe.dashboard import tensorboard_command

VOCAB = 64
PAD_ID = 0
SEQ_LEN = 16


def sequences(n: int, split: str) -> dict[str, torch.Tensor]:
    """``n`` arithmetic sequences of ids in 1..VOCAB-1 of length 8..16, right-padded with ``PAD_ID``;
    the train and val splits share no sequence."""
    combos = [
        (a, s, k) for a in range(VOCAB - 1) for s in (1, 2, 3) for k in range(SEQ_LEN // 2, SEQ_LEN + 1)
    ]
    order = np.random.default_rng(0).permutation(len(combos))
    half = len(combos) // 2
    chosen = order[:n] if split == "train" else order[half : half + n]
    ids = np.full((n, SEQ_LEN), PAD_ID, dtype=np.int64)
    mask = np.zeros((n, SEQ_LEN), dtype=np.int64)
    for i, c in enumerate(chosen):
        start, step, size = combos[c]
        ids[i, :size] = 1 + (start + step * np.arange(size)) % (VOCAB - 1)
        mask[i, :size] = 1
    input_ids, attention_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100  # the loss ignores padding (BatchInspector checks it)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class Sequences(Dataset):
    def __init__(self, n: int, split: str) -> None:
        self.columns = sequences(n, split)

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.columns.items()}


class CausalLM(LightningModule):
    """A Hugging Face causal LM as its users write it: ``forward(**batch)``, loss from ``output.loss``."""

    def __init__(self, lr: float = 3e-3, warmup: int = 10) -> None:
        super().__init__()
        import transformers

        self.save_hyperparameters()
        config = transformers.GPT2Config(
            vocab_size=VOCAB,
            n_positions=SEQ_LEN,
            n_embd=32,
            n_layer=2,
            n_head=2,
            pad_token_id=PAD_ID,
            bos_token_id=None,
            eos_token_id=None,
        )
        self.model = transformers.GPT2LMHeadModel(config)

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(**batch).loss
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self(**batch).loss, prog_bar=True)

    def configure_optimizers(self) -> Any:
        import transformers

        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.01)
        total = int(self.trainer.estimated_stepping_batches)
        sched = transformers.get_linear_schedule_with_warmup(opt, min(self.hparams.warmup, total - 1), total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def main(argv: Sequence[str] | None = None) -> Trainer:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="lightning_logs")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--fast", action="store_true", help="a few epochs on fewer sequences (smoke test)")
    args = parser.parse_args(argv)

    callbacks = recipe_callbacks("full", seed=args.seed)  # seeds: before the model is built
    model = CausalLM()
    n = 128 if args.fast else 512
    train = DataLoader(Sequences(n, "train"), batch_size=32, shuffle=True)
    val = DataLoader(Sequences(256, "val"), batch_size=64)
    logger = TensorBoardLogger(args.logdir, name="language_model", default_hp_metric=False)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2 if args.fast else args.max_epochs,
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=5,
        enable_progress_bar=not args.fast,
        enable_model_summary=not args.fast,
        enable_checkpointing=False,
    )
    trainer.fit(model, train, val)
    print(f"\nTensorBoard logs written to {os.path.abspath(logger.log_dir)}")
    print(f"View them (no venv to activate):\n    {tensorboard_command(args.logdir)}")
    return trainer


if __name__ == "__main__":
    main(sys.argv[1:])
