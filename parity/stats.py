"""The kit's statistics (NumPy and SciPy only): a sample's summary and Welch's interval for the
difference of two means."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def summarize(values: Sequence[float]) -> dict:
    """mean, std (ddof 1; 0 for one value), min, max and n of a sample."""
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """mean(b) - mean(a) with Welch's confidence interval at `level` (scipy.stats.ttest_ind, unequal
    variances); where neither sample has spread the interval is the difference itself."""
    from scipy import stats

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's interval needs two seeds or more per side, got {x.size} and {y.size}")
    diff = float(y.mean() - x.mean())
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    if se == 0.0:
        return {"diff": diff, "low": diff, "high": diff, "se": 0.0, "df": float("inf"), "level": level}
    result = stats.ttest_ind(y, x, equal_var=False)
    low, high = result.confidence_interval(level)
    return {"diff": diff, "low": float(low), "high": float(high), "se": se, "df": float(result.df), "level": level}
