"""Welch's interval for the difference of two sweeps' means (SciPy), for the comparison report.

Apart from common/summary.py on purpose: a training run imports that one, and `import scipy.stats`
would add 0.3 s to every run's start (measured with python -X importtime on a 2-core CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """mean(b) - mean(a) with Welch's confidence interval at `level` (unequal variances).

    Needs two values or more on each side; where both samples have no spread (identical runs)
    the interval is the difference itself (SciPy's would be NaN).
    """
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's interval needs two seeds or more per side, got {x.size} and {y.size}")
    diff = float(y.mean() - x.mean())
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    if se == 0.0:
        return {"diff": diff, "low": diff, "high": diff, "se": 0.0, "df": float("inf"), "level": level}
    result = stats.ttest_ind(y, x, equal_var=False)  # y first: the interval is of mean(y) - mean(x)
    low, high = result.confidence_interval(level)
    return {"diff": diff, "low": float(low), "high": float(high), "se": se, "df": float(result.df), "level": level}
