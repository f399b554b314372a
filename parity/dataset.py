"""What a proof trains and tests on, framework-neutral (NumPy only): inputs of any shape and dtype
(uint8 images, int token ids, several arrays in a tuple) and labels (class ids, next tokens), split
into train and test, with the kit's seeded batch order.

The port's own input transforms (Port.torch_inputs / jax_inputs) turn a batch of raw inputs into each
side's model inputs. A proof given no data uses Fashion-MNIST (parity/fashion_mnist.py, the one
module that knows it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Dataset:
    """The four arrays and where they came from. Inputs: an array (N, ...) or a tuple of them."""

    train_inputs: Any
    train_labels: np.ndarray
    test_inputs: Any
    test_labels: np.ndarray
    source: str = ""

    @classmethod
    def of(cls, data) -> "Dataset":
        """A Dataset as it is, or one made from an object with train_images / train_labels /
        test_images / test_labels (this project's data.FashionMNIST, torchvision-style arrays)."""
        if isinstance(data, cls):
            return data
        if hasattr(data, "train_images"):
            return cls(data.train_images, data.train_labels, data.test_images, data.test_labels,
                       getattr(data, "source", ""))
        raise TypeError(f"a proof's data is a parity.Dataset (or has train_images, train_labels, test_images, "
                        f"test_labels); got {type(data).__name__}")

    def subset(self, train_size: int | None = None, test_size: int | None = None) -> "Dataset":
        """The first train_size / test_size samples (None keeps all)."""
        return Dataset(take(self.train_inputs, slice(train_size)), self.train_labels[:train_size],
                       take(self.test_inputs, slice(test_size)), self.test_labels[:test_size], self.source)


def take(inputs, idx):
    """inputs[idx], for one array or a tuple of them."""
    return tuple(a[idx] for a in inputs) if isinstance(inputs, tuple) else inputs[idx]


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of range(num_samples) that depends only on (seed, epoch): the order this
    project's loader (data/batching.py) uses too, so a proof sees the trainers' batches."""
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
    """Index arrays over the test set in order."""
    for start in range(0, num_samples, batch_size):
        yield np.arange(start, min(start + batch_size, num_samples))
