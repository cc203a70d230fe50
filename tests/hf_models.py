"""Tiny Hugging Face models, written the way their users write Lightning modules.

Random init from config classes (nothing downloaded): BERT sequence classification, GPT-2 causal LM
(tied embeddings), a BERT language model without a causal mask (the future leaks), transformers' ViT
and ResNet image classifiers. Every module takes dict batches, has ``forward(self, **batch)``
returning the model's output object, takes the loss from ``output.loss`` and steps AdamW with
``get_linear_schedule_with_warmup`` per step. Nothing tells a check how to call the model: the
promise is zero configuration.

Planted bugs (each with its healthy twin, the default):

* ``schedule_steps="epochs"``: the LR schedule is counted in epochs but stepped per step (the LR is
  zero after ``max_epochs`` steps).
* ``token_batches(pad_in_loss=True)``: padding positions keep their token as label (not -100): the
  loss trains on padding.
* ``image_batches(unnormalised=True)``: pixels in 0..255; ``shuffle_labels=True``: labels permuted.
* ``tiny_bert_lm()``: a BERT trained for next-token prediction without a causal mask.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, Dataset

transformers = pytest.importorskip("transformers")

VOCAB = 64
PAD_ID = 0
SEQ_LEN = 16


# ---------------------------------------------------------------------- the module
class HFModule(LightningModule):
    """A Lightning module around a Hugging Face model: ``forward(**batch)``, loss from ``output.loss``.

    Args:
        model: a ``transformers`` ``PreTrainedModel``.
        lr: AdamW learning rate.
        warmup: warmup steps of ``get_linear_schedule_with_warmup``.
        schedule_steps: ``"steps"`` counts the schedule in optimizer steps (correct);
            ``"epochs"`` counts it in epochs while stepping it per step (the bug).
    """

    def __init__(
        self,
        model: Any,
        lr: float = 3e-3,
        warmup: int = 2,
        schedule_steps: Literal["steps", "epochs"] = "steps",
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.warmup = warmup
        self.schedule_steps = schedule_steps
        self.train_losses: list[float] = []

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(**batch).loss
        self.train_losses.append(float(loss.detach()))
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self(**batch).loss)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)
        if self.schedule_steps == "epochs":
            total = max(1, int(self.trainer.max_epochs or 1))
        else:
            total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = transformers.get_linear_schedule_with_warmup(opt, min(self.warmup, total - 1), total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ---------------------------------------------------------------------- models from configs
def _bert_config(**kw: Any) -> Any:
    defaults: dict[str, Any] = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=PAD_ID,
    )
    defaults.update(kw)
    return transformers.BertConfig(**defaults)


def tiny_bert(num_labels: int = 2, seed: int = 0) -> Any:
    """BERT for sequence classification (``input_ids``, ``attention_mask``, ``labels`` of shape (N,))."""
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(_bert_config(num_labels=num_labels))


def tiny_gpt2(seed: int = 0, vocab_size: int = VOCAB) -> Any:
    """GPT-2 causal LM, output layer tied to the input embedding; shifts ``labels`` inside its loss.

    ``vocab_size`` above ``VOCAB``: a vocabulary larger than the ids the data uses (as real ones are).
    """
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2, pad_token_id=PAD_ID
    )
    return transformers.GPT2LMHeadModel(config)


def tiny_t5(seed: int = 0, vocab_size: int = VOCAB) -> Any:
    """T5 for conditional generation: ``input_ids``/``attention_mask`` feed the encoder, ``labels``
    (padded with -100) the decoder, which builds its inputs from them."""
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
        pad_token_id=PAD_ID, decoder_start_token_id=PAD_ID, eos_token_id=1,
    )  # fmt: skip
    return transformers.T5ForConditionalGeneration(config)


def seq2seq_loader(n: int = 128, batch_size: int = 32, pad_in_loss: bool = False) -> DataLoader:
    """Seq2seq batches padded to one length on both sides (``padding="max_length"``): the target is
    the source's first token repeated, ``SEQ_LEN // 4`` tokens longer than the source (where it fits):
    its labels reach past the encoder's padding; their own padding is -100 (``pad_in_loss=True``:
    the pad id, the bug)."""
    ids, mask = token_sequences(n, "train")
    lengths = mask.sum(1)
    labels = torch.full_like(ids, -100 if not pad_in_loss else PAD_ID)
    for i, size in enumerate(lengths.tolist()):
        keep = min(SEQ_LEN - 1, size + SEQ_LEN // 4)
        labels[i, :keep] = ids[i, 0]
    data = _Dicts(input_ids=ids, attention_mask=mask, labels=labels)
    return DataLoader(data, batch_size=batch_size)


def tiny_wav2vec2(num_labels: int = 4, seed: int = 0) -> Any:
    """wav2vec 2.0 for audio classification (``input_values`` waveforms, ``labels`` (N,)), with the
    config's own LayerDrop (a layer skipped on random training steps) and SpecAugment."""
    torch.manual_seed(seed)
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, num_labels=num_labels, classifier_proj_size=16,
        mask_time_length=4, vocab_size=32, layerdrop=0.5,
    )  # fmt: skip
    return transformers.Wav2Vec2ForSequenceClassification(config)


def tone_loader(n: int = 128, seed: int = 0, batch_size: int = 32, shuffle: bool = False) -> DataLoader:
    """Tones at 200/400/800/1600 Hz (16 kHz, 0.1 s, random phase, amplitude and noise), each waveform
    standardised as ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does; the label is the tone."""
    g = np.random.default_rng(seed)
    y = g.integers(0, 4, n)
    t = np.arange(1600) / 16000
    freqs = np.array([200, 400, 800, 1600])
    x = g.uniform(0.2, 1.0, (n, 1)) * np.sin(
        2 * np.pi * freqs[y][:, None] * t + g.uniform(0, 2 * np.pi, (n, 1))
    )
    x = x + 0.3 * g.standard_normal(x.shape)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    data = _Dicts(input_values=torch.from_numpy(x.astype(np.float32)), labels=torch.from_numpy(y))
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle)


def tiny_bert_lm(causal: bool = False, seed: int = 0, vocab_size: int = VOCAB) -> Any:
    """BERT with an LM head, trained on next-token prediction (it shifts ``labels`` inside its loss).

    ``causal=False`` (the bug): bidirectional attention, so every position sees the token it must
    predict. ``causal=True``: ``is_decoder`` masks the future (the healthy twin).
    """
    torch.manual_seed(seed)
    return transformers.BertLMHeadModel(_bert_config(is_decoder=causal, vocab_size=vocab_size))


def tiny_vit(num_labels: int = 10, seed: int = 0, patch_size: int = 2) -> Any:
    """ViT image classifier on 8x8 RGB (``pixel_values``, ``labels``) with ``patch_size`` patches."""
    torch.manual_seed(seed)
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=patch_size,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=num_labels,
    )
    return transformers.ViTForImageClassification(config)


def tiny_resnet(num_labels: int = 10, seed: int = 0) -> Any:
    """transformers' ResNet image classifier on 8x8 RGB (``pixel_values``, ``labels``)."""
    torch.manual_seed(seed)
    config = transformers.ResNetConfig(
        num_channels=3,
        embedding_size=16,
        hidden_sizes=[16, 32],
        depths=[1, 1],
        layer_type="basic",
        num_labels=num_labels,
        downsample_in_first_stage=False,
    )
    return transformers.ResNetForImageClassification(config)


def tiny_segformer(num_labels: int = 2, seed: int = 0) -> Any:
    """SegFormer on 32x32 RGB (``pixel_values``, ``labels`` ``(N, 32, 32)``): its logits are 16x16 and its
    loss upsamples them to the labels (bilinear), as the real one does at a quarter of the resolution."""
    torch.manual_seed(seed)
    config = transformers.SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[16, 32],
        num_attention_heads=[1, 2],
        patch_sizes=[3, 3],
        strides=[2, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=32,
        num_labels=num_labels,
    )
    return transformers.SegformerForSemanticSegmentation(config)


# ---------------------------------------------------------------------- data
class _Dicts(Dataset):
    def __init__(self, **columns: torch.Tensor) -> None:
        self.columns = columns
        self.n = len(next(iter(columns.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.columns.items()}


def token_sequences(
    n: int = 256, split: Literal["train", "val"] = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Arithmetic sequences of token ids in 1..VOCAB-1 (``x[t+1] = x[t] + step``, step 1..3 per
    sequence, modulo the vocabulary), right-padded with ``PAD_ID`` to ``SEQ_LEN`` from a length in
    ``[SEQ_LEN // 2, SEQ_LEN]``: the next token is predictable from the two before it. No sequence
    occurs twice, and ``"train"`` and ``"val"`` share none (at most 850 each).

    Returns ``(input_ids, attention_mask)``.
    """
    combos = [
        (a, s, k) for a in range(VOCAB - 1) for s in (1, 2, 3) for k in range(SEQ_LEN // 2, SEQ_LEN + 1)
    ]
    order = np.random.default_rng(0).permutation(len(combos))
    half = len(combos) // 2
    if n > half:
        raise ValueError(f"token_sequences: n={n!r} exceeds the {half} sequences of a split")
    chosen = order[:n] if split == "train" else order[half : half + n]
    ids = np.full((n, SEQ_LEN), PAD_ID, dtype=np.int64)
    mask = np.zeros((n, SEQ_LEN), dtype=np.int64)
    for i, c in enumerate(chosen):
        start, step, size = combos[c]
        ids[i, :size] = 1 + (start + step * np.arange(size)) % (VOCAB - 1)
        mask[i, :size] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def lm_loader(
    n: int = 256,
    batch_size: int = 32,
    split: Literal["train", "val"] = "train",
    pad_in_loss: bool = False,
    shuffle: bool = False,
    pre_shifted: bool = False,
    bos: int | None = None,
) -> DataLoader:
    """Causal-LM batches ``{"input_ids", "attention_mask", "labels"}``; labels are the inputs with
    padding set to -100 (``pad_in_loss=True``: padding left in the labels, the bug;
    ``pre_shifted=True``: the labels already the next ids, for a model that shifts them again;
    ``bos``: every sequence starts with this id, as a Llama or BERT tokenizer writes them)."""
    ids, mask = token_sequences(n, split)
    if bos is not None:
        ids = torch.cat([torch.full_like(ids[:, :1], bos), ids[:, :-1]], dim=1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask[:, :-1]], dim=1)
    labels = ids.clone()
    if not pad_in_loss:
        labels[mask == 0] = -100
    if pre_shifted:
        labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], dim=1)
    data = _Dicts(input_ids=ids, attention_mask=mask, labels=labels)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle)


def classification_loader(
    n: int = 256,
    batch_size: int = 32,
    split: Literal["train", "val"] = "train",
    shuffle_labels: bool = False,
    shuffle: bool = False,
) -> DataLoader:
    """Sequence-classification batches ``{"input_ids", "attention_mask", "labels"}``: label 1 when the
    sequence starts in the upper half of the vocabulary, else 0 (balanced)."""
    ids, mask = token_sequences(n, split)
    labels = (ids[:, 0] >= VOCAB // 2).long()
    if shuffle_labels:
        labels = labels[torch.from_numpy(np.random.default_rng(1).permutation(n))]
    data = _Dicts(input_ids=ids, attention_mask=mask, labels=labels)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle)


def image_loader(
    n: int = 512,
    batch_size: int = 32,
    split: Literal["train", "val"] = "train",
    unnormalised: bool = False,
    shuffle_labels: bool = False,
    shuffle: bool = False,
) -> DataLoader:
    """sklearn's digits as 8x8 RGB ``{"pixel_values": (N, 3, 8, 8), "labels": (N,)}``, normalised to
    zero mean and unit variance (``unnormalised=True``: raw 0..255 pixels, the bug). ``"train"`` is
    the first ``n`` images, ``"val"`` the ``n`` from image 1000 on."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    offset = 0 if split == "train" else 1000
    x = digits.images[offset : offset + n].astype(np.float32) * (255.0 / 16.0)
    y = digits.target[offset : offset + n].astype(np.int64)
    if not unnormalised:
        x = (x - x.mean()) / x.std()
    if shuffle_labels:
        y = y[np.random.default_rng(1).permutation(len(y))]
    pixels = torch.from_numpy(np.repeat(x[:, None], 3, axis=1).copy())
    data = _Dicts(pixel_values=pixels, labels=torch.from_numpy(y))
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle)


def tiny_vit_coarse(num_labels: int = 10, seed: int = 0) -> Any:
    """ViT on 8x8 RGB with 4x4 patches: learns the digits in a few epochs (``tiny_vit``'s 2x2 patches
    underfit for dozens of epochs), for healthy runs that must converge."""
    return tiny_vit(num_labels, seed, patch_size=4)
