"""What a trainer prints: a progress bar, one line per epoch, and a closing line."""

from __future__ import annotations

import sys

import numpy as np
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


def sweep_line(epoch: int, epochs: int, records: list[dict], seconds: float) -> str:
    """An epoch of a seed sweep: mean +- std over the seeds (min to max for test accuracy)."""
    def stat(key, scale=1.0):
        a = scale * np.asarray([r[key] for r in records], dtype=np.float64)
        return a.mean(), (a.std(ddof=1) if a.size > 1 else 0.0), a.min(), a.max()

    tl, ta, vl, va = stat("train_loss"), stat("train_accuracy", 100), stat("test_loss"), stat("test_accuracy", 100)
    return (
        f"epoch {epoch:>2}/{epochs}  {seeds_phrase(len(records))}  train loss {tl[0]:.4f} +- {tl[1]:.4f}  "
        f"train acc {ta[0]:6.2f}% +- {ta[1]:.2f}  test loss {vl[0]:.4f} +- {vl[1]:.4f}  "
        f"test acc {va[0]:6.2f}% +- {va[1]:.2f} ({va[2]:.2f} to {va[3]:.2f})  {seconds:6.1f} s"
    )


def seeds_phrase(count: int) -> str:
    return f"{count} seed" + ("" if count == 1 else "s")


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)
