"""What a trainer prints: a progress bar, one line per epoch, and a closing line."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from common.summary import summarize


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
    tl, ta, vl, va = (summarize([r[key] for r in records])
                      for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"))
    return (
        f"epoch {epoch:>2}/{epochs}  {seeds_phrase(len(records))}  train loss {tl['mean']:.4f} +- {tl['std']:.4f}  "
        f"train acc {100 * ta['mean']:6.2f}% +- {100 * ta['std']:.2f}  "
        f"test loss {vl['mean']:.4f} +- {vl['std']:.4f}  test acc {100 * va['mean']:6.2f}% +- {100 * va['std']:.2f} "
        f"({100 * va['min']:.2f} to {100 * va['max']:.2f})  {seconds:6.1f} s"
    )


def seeds_phrase(count: int) -> str:
    return f"{count} seed" + ("" if count == 1 else "s")


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)
