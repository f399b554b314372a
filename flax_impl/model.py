"""The JAX twin: the same convnet as torch_impl.model, in Flax Linen (NHWC inside)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from common.arch import CONV1_CHANNELS, CONV2_CHANNELS, HIDDEN, NUM_CLASSES, spatial_sizes
from flax_impl.ops import conv2d, max_pool_2x2

INITS = ("torch", "flax")


def torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for weights (kaiming_uniform, a=sqrt(5)) and biases."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def initializers(init: str, fan_in: int):
    """(kernel_init, bias_init) for a layer with this fan-in."""
    if init == "torch":
        return torch_uniform(fan_in), torch_uniform(fan_in)
    if init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros_init()
    raise ValueError(f"unknown init {init!r}; use one of {INITS}")


class Conv2d(nn.Module):
    """'VALID' stride-1 conv with params named like nn.Conv's (kernel HWIO, bias)."""

    features: int
    kernel_size: int
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x):  # (N, H, W, C)
        k, c = self.kernel_size, x.shape[-1]
        kernel_init, bias_init = initializers(self.init_scheme, c * k * k)
        kernel = self.param("kernel", kernel_init, (k, k, c, self.features))
        bias = self.param("bias", bias_init, (self.features,))
        return conv2d(x, kernel, bias)


class Dense(nn.Module):
    """A dense layer with params named like nn.Dense's (kernel (in, out), bias); its init may need the fan-in."""

    features: int
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x):  # (N, in)
        kernel_init, bias_init = initializers(self.init_scheme, x.shape[-1])
        kernel = self.param("kernel", kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", bias_init, (self.features,))
        return x @ kernel + bias


class Convnet(nn.Module):
    """Conv(1->32,k) ReLU MaxPool2, Conv(32->64,k) ReLU MaxPool2, Flatten, Dense->128 ReLU, Dense 128->10."""

    conv2d_kernel_size: int = 3
    init_scheme: str = "torch"

    def setup(self):
        spatial_sizes(self.conv2d_kernel_size)  # a clear ValueError for a kernel that leaves no spatial extent
        self.conv1 = Conv2d(CONV1_CHANNELS, self.conv2d_kernel_size, self.init_scheme)
        self.conv2 = Conv2d(CONV2_CHANNELS, self.conv2d_kernel_size, self.init_scheme)
        self.dense1 = Dense(HIDDEN, self.init_scheme)
        self.dense2 = Dense(NUM_CLASSES, self.init_scheme)

    def __call__(self, x):  # (N, 28, 28, 1) float32 in [0, 1]
        x = self.sow_as("conv1", nn.relu(self.conv1(x)))  # (N, 26, 26, 32) at k = 3
        x = self.sow_as("pool1", max_pool_2x2(x))  # (N, 13, 13, 32)
        x = self.sow_as("conv2", nn.relu(self.conv2(x)))  # (N, 11, 11, 64)
        x = self.sow_as("pool2", max_pool_2x2(x))  # (N, 5, 5, 64)
        # Flatten channel-major, as torch does on NCHW, so dense1's weights map by a plain transpose.
        x = self.sow_as("flatten", jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1))  # (N, 1600)
        x = self.sow_as("dense1", nn.relu(self.dense1(x)))  # (N, 128)
        return self.sow_as("dense2", self.dense2(x))  # (N, 10) logits

    def sow_as(self, name: str, x):
        """Record a layer's output when 'intermediates' is mutable (shape tests); free otherwise."""
        self.sow("intermediates", f"{name}{_OUT}", x)
        return x


_OUT = "_out"  # sown names must differ from the submodules' names


def layer_outputs(model: Convnet, variables, x) -> dict[str, jax.Array]:
    """Every layer's output by name (conv1, pool1, ..., dense2) for an input batch (N, 28, 28, 1)."""
    _, state = model.apply(variables, x, mutable=["intermediates"])
    return {name.removesuffix(_OUT): values[0] for name, values in state["intermediates"].items()}


def count_parameters(params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
