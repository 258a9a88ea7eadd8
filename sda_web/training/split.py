"""The train/validation split: by file, deterministic from the seed. No torch."""
from __future__ import annotations

import random


def split_by_file(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, val) file indices; at least one of each when count >= 2."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    n_val = held_out_count(count, val_fraction)
    return sorted(order[n_val:]), sorted(order[:n_val])


def held_out_count(count: int, val_fraction: float) -> int:
    """How many of `count` files are held out: at least one of each side when count >= 2."""
    if count < 2:
        return 0
    return min(count - 1, max(1, round(count * val_fraction)))
