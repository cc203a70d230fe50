"""Target statistics: the dataset fast path against the dataloader fallback.

A 1,000,000-sample data set with a ``targets`` tensor and image-like inputs (1x28x28, produced on
access as a real image data set would decode them). The fast path reads ``dataset.targets``; the
fallback iterates a DataLoader (batch size 256, no workers) as it would for a data set without
one. Prints both times and the ratio.

    python benchmarks/target_stats_scan.py [--samples 1000000] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.utils.data import DataLoader, Dataset

from lightning_recipe.core.stats import collect_target_stats


class ImageLike(Dataset):
    def __init__(self, n: int, classes: int = 10) -> None:
        g = torch.Generator().manual_seed(0)
        self.targets = torch.randint(0, classes, (n,), generator=g)
        self._image = torch.rand(1, 28, 28, generator=g)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self._image.clone(), self.targets[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    ds = ImageLike(args.samples)
    loader = DataLoader(ds, batch_size=args.batch_size)

    t0 = time.perf_counter()
    fast = collect_target_stats("multiclass", dataset=ds, num_classes=10)
    t_fast = time.perf_counter() - t0

    t0 = time.perf_counter()
    slow = collect_target_stats("multiclass", dataloader=loader, num_classes=10, progress=False)
    t_slow = time.perf_counter() - t0

    assert torch.equal(fast.class_counts, slow.class_counts)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"samples: {args.samples:,}  batch size: {args.batch_size}")
    print(f"fast path (dataset.targets): {t_fast * 1e3:10.1f} ms")
    print(f"dataloader fallback:         {t_slow * 1e3:10.1f} ms")
    print(f"ratio: {t_slow / t_fast:,.0f}x faster")


if __name__ == "__main__":
    main()
