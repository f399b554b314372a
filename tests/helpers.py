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


def synthetic_dataset(n_train: int = 200, n_test: int = 100, seed: int = 0):
    """Random images whose first two pixels encode the sample's index (so a test can tell which
    samples a trainer saw), with learnable labels (a class-dependent bright square)."""
    from data import FashionMNIST

    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + 2 * label : 8 + 2 * label, 10:18] = 255
        images[:, 0, 0] = np.arange(n) % 256
        images[:, 0, 1] = np.arange(n) // 256
        return images, labels.astype(np.int64)

    return FashionMNIST(*split(n_train), *split(n_test), source="synthetic")


def decode_indices(images) -> np.ndarray:
    """The sample indices encoded by `synthetic_dataset` in float images in [0, 1] (any layout)."""
    flat = np.asarray(images).reshape(len(images), -1)  # pixel (0,0) and (0,1) come first in NCHW and NHWC
    return np.rint(flat[:, 0] * 255).astype(int) + 256 * np.rint(flat[:, 1] * 255).astype(int)


def read_run_files(out_dir: Path) -> dict:
    """Parse every file a trainer writes; raises if any is missing or malformed."""
    import json

    from safetensors.numpy import load_file

    out = {
        "config": json.loads((out_dir / "config.json").read_text()),
        "metrics": [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()],
        "timings": json.loads((out_dir / "timings.json").read_text()),
        "summary": json.loads((out_dir / "summary.json").read_text()),
        "weights": load_file(out_dir / "model.safetensors"),
    }
    for png in ("predictions.png", "curves.png"):
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    return out


def tiny_run(train_main, tmp_path: Path, *flags: str) -> Path:
    """One quick CLI run (1 epoch, 256 training and 128 test samples) of either trainer's main()."""
    out = tmp_path / "run"
    train_main(["--epochs", "1", "--train-size", "256", "--test-size", "128", "--out-dir", str(out), "--quiet",
                *flags])
    return out
