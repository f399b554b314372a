"""Character-level text for nanoGPT that installs offline: Debian's `fortunes` package
(`apt-get install -y fortunes`, 2.5 MB of text in /usr/share/games/fortunes/), NumPy only.

As nanoGPT's data/shakespeare_char/prepare.py does: the whole text, its first 90% for training and the
rest for validation, one token per character. The vocabulary is ASCII (128 ids, fixed, so the model's
size does not depend on which fortunes are installed; the few non-ASCII characters are dropped). nanoGPT's
train.py samples random windows; a proof wants a fixed set, so the token stream is cut into
non-overlapping windows of block_size + 1: the inputs are a window's first block_size tokens, the
targets the same shifted by one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from parity.dataset import Dataset

FORTUNES = Path("/usr/share/games/fortunes")
VOCAB_SIZE = 128


def text(folder: Path = FORTUNES) -> str:
    """Every fortune file of the package (not the .dat indexes, not the .u8 links), in name order."""
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.suffix)
    if not files:
        raise FileNotFoundError(f"no fortune files in {folder}: apt-get install -y fortunes")
    return "".join(p.read_text(encoding="utf-8", errors="ignore") for p in files)


def encode(s: str) -> np.ndarray:
    codes = np.frombuffer(s.encode("ascii", errors="ignore"), dtype=np.uint8)
    return codes.astype(np.int64)


def windows(tokens: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each (N, block_size): non-overlapping windows of block_size + 1 tokens."""
    n = (len(tokens) - 1) // block_size
    x = tokens[: n * block_size].reshape(n, block_size)
    y = tokens[1 : n * block_size + 1].reshape(n, block_size)
    return x, y


def padded(batch, labels: np.ndarray):
    """The batch with every 4th target -1, as a script that pads its sequences makes it: model.py's
    cross-entropy ignores -1 (ignore_index=-1), and the proof's windows of real text hold none (the kit's
    Port.edge_batch)."""
    idx, targets = batch
    targets = targets.copy()
    targets.reshape(-1)[::4] = -1
    return (idx, targets), targets


def load(block_size: int, folder: Path = FORTUNES) -> Dataset:
    """The proof's data: inputs (idx, targets) as nanoGPT's model(idx, targets) takes them, labels the
    targets."""
    tokens = encode(text(folder))
    split = int(0.9 * len(tokens))
    (x, y), (xv, yv) = windows(tokens[:split], block_size), windows(tokens[split:], block_size)
    return Dataset((x, y), y, (xv, yv), yv, source=f"{folder} ({len(tokens):,} characters)")
