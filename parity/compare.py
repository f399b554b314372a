"""Where two sides first split: compare named arrays in order and say which one parted first, by
how much, at which element, and with which values (NumPy only)."""

from __future__ import annotations

from typing import Iterable

import numpy as np


class Split(AssertionError):
    """The two sides differ beyond the bound; the message says where first and with which values."""


def worst(torch_value: np.ndarray, jax_value: np.ndarray) -> tuple[float, tuple, float, float]:
    """(max |difference|, its index, torch's value there, JAX's value there)."""
    diff = np.abs(np.asarray(torch_value, np.float64) - np.asarray(jax_value, np.float64))
    if diff.ndim == 0:
        return float(diff), (), float(torch_value), float(jax_value)
    if np.isnan(diff).any():
        index = np.unravel_index(np.argmax(np.isnan(diff)), diff.shape)
    else:
        index = np.unravel_index(np.argmax(diff), diff.shape)
    return float(diff[index]), tuple(int(i) for i in index), float(torch_value[index]), float(jax_value[index])


class Lines(list):
    """One line per value compared; .closest is the line whose difference came closest to its bound."""

    closest: str = ""


def first_split(items: Iterable[tuple[str, np.ndarray, np.ndarray, float]], what: str,
                names: tuple[str, str] = ("torch", "JAX")) -> Lines:
    """items: (label, one side's value, the other's, bound on max |difference|), in the order the values
    arise; names: what the two sides are called in a message (the float32 checks compare JAX against
    the float64 reference, not against torch). Raises Split at the first label whose difference
    exceeds its bound (or whose shapes differ); returns one line per label compared otherwise."""
    a, b = names
    lines, closest = Lines(), -1.0
    for label, t, j, bound in items:
        t, j = np.asarray(t), np.asarray(j)
        if t.shape != j.shape:
            raise Split(f"{what}: first split at {label}: shapes differ, {a} {t.shape} vs {b} {j.shape}"
                        + _before(lines))
        if t.size == 0:
            continue
        diff, index, tv, jv = worst(t, j)
        if not diff <= bound:  # NaN fails too
            raise Split(f"{what}: first split at {label}: max |{a} - {b}| = {diff:.3g} > {bound:.3g} at "
                        f"{list(index)}: {a} {tv!r}, {b} {jv!r}" + _before(lines))
        lines.append(f"{label}: {diff:.3g} <= {bound:.3g}")
        if bound > 0 and diff / bound > closest:
            closest, lines.closest = diff / bound, lines[-1]
    return lines


def _before(lines: list[str]) -> str:
    return f" (agreeing before it: {'; '.join(lines[-3:])})" if lines else " (the first value compared)"


def scale(a: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64)).max()) if np.size(a) else 0.0


def cut(items: list[str], keep: int = 8) -> str:
    """A readable list: the first `keep` items, then how many more (a ResNet's weight-map error was
    one 25 KB line)."""
    return "; ".join(items[:keep]) + (f"; ... and {len(items) - keep} more" if len(items) > keep else "")
