"""The train/validation split: by file, deterministic from the seed. No torch."""
from __future__ import annotations

import random


def split_by_file(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, val) file indices; at least one of each when count >= 2."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    if count < 2:
        return order, []
    n_val = min(count - 1, max(1, round(count * val_fraction)))
    return sorted(order[n_val:]), sorted(order[:n_val])
