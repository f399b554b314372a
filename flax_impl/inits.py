"""Initialisers both Flax APIs share: torch's defaults, or Flax's own (`--init`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

INITS = ("torch", "flax")

# torch's default weight init, kaiming_uniform(a=sqrt(5)), is U(-b, b) with b = 1/sqrt(fan_in):
# a uniform of variance 1 / (3 fan_in), which is exactly this Flax initializer.
torch_kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
    """torch's default bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in being the layer's weight's."""
    bound = 1 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def initializers(scheme: str, fan_in: int) -> dict:
    """kernel_init and bias_init for a layer: torch's defaults, or Flax's own (lecun_normal, zeros)."""
    if scheme == "torch":
        return {"kernel_init": torch_kernel_init, "bias_init": torch_bias_init(fan_in)}
    if scheme == "flax":
        return {}
    raise ValueError(f"unknown init {scheme!r}; use one of {INITS}")
