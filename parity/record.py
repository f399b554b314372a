"""What a layer-by-layer comparison needs on both sides, framework-neutral: every named layer's
output in call order, and the dropout masks, drawn once by the kit and given to both sides.

The two frameworks share no random numbers, so a train-mode comparison of a model with dropout
is only possible with the same masks on both sides. The torch side draws each mask (its layer's
drop probability, in torch's layout) the first time a dropout layer is called; the JAX side looks
up the mask of the same layer and call, in its own layout, and scales the survivors by whatever
its own layer does to a tensor of ones: a port whose rate means the keep probability, or whose
dropout is off in train mode or on in eval mode, still shows as a difference.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


class Masks:
    """Keep-masks by (torch layer name, call index), drawn from one seeded NumPy generator."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.drawn: dict[tuple[str, int], np.ndarray] = {}

    def draw(self, key: tuple[str, int], shape: tuple[int, ...], drop: float) -> np.ndarray:
        if key not in self.drawn:
            self.drawn[key] = self.rng.random(shape) >= drop
        return self.drawn[key]

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        return self.drawn.get(key)


class Recorder:
    """Outputs by layer name, each a list over that layer's calls, and the order the calls came in."""

    def __init__(self, masks: Masks | None = None):
        self.masks = masks
        self.outputs: dict[str, list[np.ndarray]] = defaultdict(list)
        self.order: list[tuple[str, int]] = []
        self.unmasked: list[str] = []  # JAX dropout layers that found no torch mask of their name
        self.rates: dict[str, float] = {}  # drop probability of the functional dropouts seen (no module to ask)
        self.draws: dict[str, int] = defaultdict(int)  # masks asked for by name, where no output is recorded

    def next_draw(self, name: str) -> int:
        """The call index of a dropout that records no output of its own (inside Flax's attention)."""
        self.draws[name] += 1
        return self.draws[name] - 1

    def next_call(self, name: str) -> int:
        return len(self.outputs[name])

    def record(self, name: str, value) -> None:
        self.order.append((name, len(self.outputs[name])))
        self.outputs[name].append(np.asarray(value))
