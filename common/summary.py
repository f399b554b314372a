"""A sample's summary (mean, std, min, max): what a seed sweep reports after every epoch (NumPy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarize(values: Sequence[float]) -> dict:
    """mean, std (ddof 1; 0 for one value), min, max and n of a sample."""
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}
