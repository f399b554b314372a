"""The proof's text: nanoGPT's character-level fortunes (examples/nanogpt/data.py: Debian's `fortunes`
package, its first 90% for training, one token per ASCII character), cut into windows of bptt + 1
characters: a window's first bptt tokens are main.py's `data` for one sequence, the same shifted by one
its `target` (get_batch). main.py walks one long stream per batch column and carries the hidden state
from chunk to chunk; the proof's batches are the kit's seeded draws of windows, each from a zero state,
and its edge batch (`carried`) gives one a state such as a previous chunk leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from examples.nanogpt.data import FORTUNES, encode, text, windows
from parity.dataset import Dataset


def load(bptt: int, folder: Path = FORTUNES) -> Dataset:
    """Raw inputs (N, bptt) token ids, labels (N, bptt) the next tokens."""
    tokens = encode(text(folder))
    split = int(0.9 * len(tokens))
    (x, y), (xv, yv) = windows(tokens[:split], bptt), windows(tokens[split:], bptt)
    return Dataset(x, y, xv, yv, source=f"{folder} ({len(tokens):,} characters)")


def carried(nlayers: int, nhid: int, windows: np.ndarray, labels: np.ndarray):
    """The batch as main.py's train() runs every chunk after its first: from the state the previous chunk
    left (repackage_hidden), not init_hidden's zeros. The proof's batches all start from zeros, where a
    port that reads (h, c) in Flax's carry order (c, h) computes the same (the kit's Port.edge_batch).
    h as an LSTM's output, tanh-squashed; c unbounded; seeded, float32."""
    rng = np.random.default_rng(0)
    shape = (nlayers, len(windows), nhid)
    h = np.tanh(rng.standard_normal(shape)).astype(np.float32)
    c = rng.standard_normal(shape).astype(np.float32)
    return (windows, (h, c)), labels
