"""One seeded, framework-neutral epoch order, so both trainers see identical batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of range(num_samples) that depends only on (seed, epoch)."""
    # SeedSequence mixes both numbers, so (seed, epoch) pairs never share a stream.
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def num_batches(num_samples: int, batch_size: int) -> int:
    """Batches per epoch, counting the last partial one."""
    return -(-num_samples // batch_size)


def train_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Index arrays of one shuffled training epoch; the last batch may be short and is kept."""
    order = epoch_order(num_samples, seed, epoch)
    for start in range(0, num_samples, batch_size):
        yield order[start : start + batch_size]


def eval_batches(num_samples: int, batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays over the evaluation set in file order."""
    for start in range(0, num_samples, batch_size):
        yield np.arange(start, min(start + batch_size, num_samples))
