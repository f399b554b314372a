"""What a trainer prints: a progress bar, one line per epoch, and a closing line."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: int, description: str, quiet: bool):
    """A tqdm bar over the batches of one epoch; off when quiet or when stderr is not a terminal."""
    return tqdm(total=total, desc=description, unit="batch", leave=False,
                disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)


def epoch_line(record: dict, epochs: int, seconds: float) -> str:
    return (
        f"epoch {record['epoch']:>2}/{epochs}  train loss {record['train_loss']:.4f}  "
        f"train acc {100 * record['train_accuracy']:6.2f}%  test loss {record['test_loss']:.4f}  "
        f"test acc {100 * record['test_accuracy']:6.2f}%  {seconds:6.1f} s"
    )


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)
