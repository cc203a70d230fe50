"""Throughput of the DataInspector pass against a bare iteration of the same dataloader, and its memory.

Two loaders over 8,192 CIFAR-sized samples (3x32x32), batch size 128, no workers:

* ``realistic``: a map-style dataset that stores uint8 HWC images (as torchvision's CIFAR10 does)
  and turns each one in ``__getitem__`` into a PIL image, pads and crops it, and converts it to a
  normalised float CHW tensor (``RandomCrop(32, padding=4)``, ``ToTensor``, ``Normalize``);
* ``in-memory``: a ``TensorDataset`` of ready float tensors (the cheapest loader there is, so the
  inspection's own cost shows fully).

For each: samples/s of a bare ``for batch in loader`` loop, samples/s of ``inspect_data`` over the
same loader (one pass: hashes, statistics, class counts, top-k, analysis), their ratio (target:
>= 80% on the realistic loader), the bytes the statistics hold per sample (exact) and the peak of
the Python-level allocations of a separate pass (``tracemalloc``: numpy arrays of the analysis;
torch's allocator is not traced, and the throughput runs are not traced).

Run: ``python benchmarks/data_inspector_throughput.py [--samples N] [--batch-size B]``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_recipe import inspect_data
from lightning_recipe.core.data_stats import SplitStats

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


class UInt8Images(Dataset):
    """torchvision's CIFAR10 recipe without torchvision: uint8 HWC array -> PIL image -> pad-4 crop
    (fixed offset, so the data are deterministic) -> float CHW in [0, 1] -> normalised."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = np.asarray(Image.fromarray(self.images[i]))
        img = np.pad(img, ((4, 4), (4, 4), (0, 0)))[2:34, 3:35]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        return (x - MEAN) / STD, int(self.labels[i])


def bare(loader: DataLoader) -> float:
    start = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def inspected(loader: DataLoader) -> float:
    start = time.perf_counter()
    result = inspect_data(loader, progress=False)
    elapsed = time.perf_counter() - start
    return result.summary["train"]["samples"] / elapsed


def traced_peak(loader: DataLoader) -> int:
    """Peak of the Python-level allocations (numpy included, torch's allocator not) in one pass."""
    tracemalloc.start()
    inspect_data(loader, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.samples, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=args.samples)
    loaders = {
        "realistic": DataLoader(UInt8Images(images, labels), batch_size=args.batch_size),
        "in-memory": DataLoader(
            TensorDataset(
                (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD,
                torch.from_numpy(labels),
            ),
            batch_size=args.batch_size,
        ),
    }
    print(
        f"{args.samples} samples of 3x32x32, batch size {args.batch_size}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'loader':<10} {'bare/s':>10} {'inspected/s':>12} {'ratio':>7} {'traced MiB':>10} {'stats B/sample':>15}"
    )
    for name, loader in loaders.items():
        bare(loader)  # warm up
        b = max(bare(loader) for _ in range(args.repeats))
        i = max(inspected(loader) for _ in range(args.repeats))
        peak = traced_peak(loader)
        stats = SplitStats("train", top_k=0)
        for k, (x, y) in enumerate(loader):
            stats.update(x, y, torch.arange(k * args.batch_size, k * args.batch_size + x.shape[0]))
        per_sample = stats.nbytes / args.samples
        print(f"{name:<10} {b:>10.0f} {i:>12.0f} {i / b:>7.1%} {peak / 2**20:>10.1f} {per_sample:>15.1f}")


if __name__ == "__main__":
    main()
