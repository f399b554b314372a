"""Accuracy and train loss over seeds: each side trained by the kit's loop (parity.loop) from its own
seeded draws; the means compared with Welch's interval (common.stats, SciPy)."""

from __future__ import annotations

from dataclasses import dataclass

from parity.stats import summarize, welch
from parity.compare import Split
from parity.loop import TRAIN, subset


@dataclass(frozen=True)
class Sweep:
    """How much training the accuracy check does: seeds per side, epochs, samples, and its level."""

    seeds: int = 6
    epochs: int = 1
    train_size: int = 6000
    test_size: int = 2000
    level: float = 0.99
    min_accuracy: float = 0.5  # both must learn: far above chance (10%) after this much training


def check_accuracy_over_seeds(proof, sweep: Sweep) -> list[str]:
    """Both sides learn, and their mean test accuracy and final train loss over seeds do not differ
    beyond the seeds' noise (Welch's interval at sweep.level contains 0)."""
    data = subset(proof.dataset, sweep.train_size, sweep.test_size)
    results = {side: [TRAIN[side](proof.port, data, s, sweep.epochs) for s in range(sweep.seeds)]
               for side in ("torch", "jax")}
    lines = []
    for key, get in (("test accuracy", lambda r: r.test_accuracy), ("train loss", lambda r: r.train_loss[-1])):
        t, j = [get(r) for r in results["torch"]], [get(r) for r in results["jax"]]
        st, sj, w = summarize(t), summarize(j), welch(t, j, sweep.level)
        line = (f"{key} over seeds 0-{sweep.seeds - 1} ({sweep.epochs} epoch(s), {sweep.train_size:,} samples): torch "
                f"{st['mean']:.4f} +- {st['std']:.4f}, JAX {sj['mean']:.4f} +- {sj['std']:.4f}; JAX - torch "
                f"{w['diff']:+.4f} [{w['low']:+.4f}, {w['high']:+.4f}] ({100 * sweep.level:.0f}%, Welch)")
        if key == "test accuracy" and min(st["mean"], sj["mean"]) < sweep.min_accuracy:
            raise Split(f"accuracy over seeds: a side did not learn (mean test accuracy below "
                        f"{sweep.min_accuracy:.0%}): {line}")
        if not w["low"] <= 0 <= w["high"]:
            raise Split(f"accuracy over seeds: the means differ beyond the seeds' noise: {line}")
        lines.append(line)
    seconds = {side: sum(r.seconds for r in rs) for side, rs in results.items()}
    return [*lines, f"training time: torch {seconds['torch']:.1f} s, JAX {seconds['jax']:.1f} s"]
