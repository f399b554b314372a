"""Small IDX datasets written on the fly."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from data import FILES, encode_idx


def write_tiny_idx(directory: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    """Four small, valid IDX files; returns the arrays written, by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        raw = encode_idx(arrays[name])
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return arrays
