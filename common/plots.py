"""Plots both frameworks draw the same way: predictions.png, curves.png and the comparison."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data import CLASSES  # noqa: E402


def plot_predictions(images: np.ndarray, predictions: np.ndarray, labels: np.ndarray, path: Path,
                     title: str = "") -> None:
    """The first 15 test images with predicted and true class; mistakes in red, as the original example."""
    n = min(15, len(images))
    fig, axes = plt.subplots(3, 5, figsize=(10, 7))
    for i, ax in enumerate(axes.flat):
        ax.set(xticks=[], yticks=[])  # no ticks to lay out: an axis turned off still computed them (0.1 s)
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray_r")
        ok = predictions[i] == labels[i]
        ax.set_title(f"pred: {CLASSES[predictions[i]]}\ntrue: {CLASSES[labels[i]]}" + ("" if ok else "  ✗"),
                     fontsize=9, color="black" if ok else "red")
    wrong = int(np.sum(predictions[:n] != labels[:n]))
    fig.suptitle(f"{title}  ({wrong} of {n} wrong, in red)".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _curves(ax_loss, ax_acc, metrics: list[dict], label: str, style: str = "-") -> None:
    epochs = [m["epoch"] for m in metrics]
    ax_loss.plot(epochs, [m["train_loss"] for m in metrics], style, marker="o", label=f"{label} train")
    ax_loss.plot(epochs, [m["test_loss"] for m in metrics], style, marker="s", label=f"{label} test")
    ax_acc.plot(epochs, [100 * m["train_accuracy"] for m in metrics], style, marker="o", label=f"{label} train")
    ax_acc.plot(epochs, [100 * m["test_accuracy"] for m in metrics], style, marker="s", label=f"{label} test")


def plot_curves(runs: dict[str, list[dict]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch; several runs (label -> metrics) are overlaid."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for (label, metrics), style in zip(runs.items(), itertools.cycle(("-", "--", ":", "-."))):
        _curves(ax_loss, ax_acc, metrics, label, style)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    _save(fig, (ax_loss, ax_acc), path, title, legend_size=8)


def _save(fig, axes, path: Path, title: str, legend_size: int) -> None:
    """Whole epochs on the x axes, a grid and a legend in each panel, the title; write and close."""
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend_size)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bands(sweeps: dict[str, list[list[dict]]], path: Path, title: str = "") -> None:
    """Learning curves of seed sweeps: per framework the mean over seeds, a band of +-1 std, and the min-max range.

    sweeps: label -> one metrics list per seed (all of the same length).
    """
    panels = (("train_loss", "train loss (cross-entropy)", 1), ("test_loss", "test loss (cross-entropy)", 1),
              ("test_accuracy", "test accuracy (%)", 100))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for (label, runs), color in zip(sweeps.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        epochs = np.arange(1, min(len(m) for m in runs) + 1)
        for ax, (key, name, scale) in zip(axes, panels):
            values = scale * np.array([[m[e - 1][key] for e in epochs] for m in runs])  # (seeds, epochs)
            mean, std = values.mean(0), values.std(0, ddof=1) if len(runs) > 1 else np.zeros(len(epochs))
            ax.plot(epochs, mean, color=color, marker="o", label=f"{label} mean of {len(runs)} seeds")
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.25, label=f"{label} +-1 std")
            ax.fill_between(epochs, values.min(0), values.max(0), color=color, alpha=0.08, label=f"{label} min-max")
            ax.set(xlabel="epoch", ylabel=name, title=name)
    _save(fig, axes, path, title, legend_size=7)
