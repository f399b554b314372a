"""The JAX twin of torch_impl.model in plain Flax Linen: Flax's own layers, NHWC inside.

Read it next to torch_impl/model.py; layer for layer:
- nn.Conv2d(1, 32, k)  -> nn.Conv(32, (k, k), padding="VALID")   (in-channels come from the input)
- nn.MaxPool2d(2)      -> nn.max_pool(x, (2, 2), strides=(2, 2))   (floor, like torch)
- nn.Flatten()         -> transpose NHWC to NCHW, then reshape      (so dense1's weights map by a transpose)
- nn.LazyLinear(128)   -> nn.Dense(128)                             (Flax layers are all lazy in their inputs)
- torch's default init -> variance_scaling(1/3, "fan_in", "uniform") kernels, U(+-1/sqrt(fan_in)) biases
"""

from __future__ import annotations

import jax
from flax import linen as nn

from common.arch import CONV1_CHANNELS, CONV2_CHANNELS, HIDDEN, NUM_CLASSES, flat_features, spatial_sizes
from flax_impl.inits import initializers


class Convnet(nn.Module):
    """Conv(1->32,k) ReLU MaxPool2, Conv(32->64,k) ReLU MaxPool2, Flatten, Dense->128 ReLU, Dense 128->10."""

    conv2d_kernel_size: int = 3
    init_scheme: str = "torch"

    def setup(self):
        k = self.conv2d_kernel_size
        spatial_sizes(k)  # a clear ValueError for a kernel that leaves no spatial extent
        init = self.init_scheme
        self.conv1 = nn.Conv(CONV1_CHANNELS, (k, k), padding="VALID", **initializers(init, 1 * k * k))
        self.conv2 = nn.Conv(CONV2_CHANNELS, (k, k), padding="VALID", **initializers(init, CONV1_CHANNELS * k * k))
        self.dense1 = nn.Dense(HIDDEN, **initializers(init, flat_features(k)))
        self.dense2 = nn.Dense(NUM_CLASSES, **initializers(init, HIDDEN))

    def __call__(self, x):  # (N, 28, 28, 1) float32 in [0, 1]
        x = self.pool(nn.relu(self.conv1(x)))  # (N, 26, 26, 32) -> (N, 13, 13, 32) at k = 3
        x = self.pool(nn.relu(self.conv2(x)))  # (N, 11, 11, 64) -> (N, 5, 5, 64)
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # (N, 1600), channel-major as torch flattens NCHW
        x = nn.relu(self.dense1(x))  # (N, 128)
        return self.dense2(x)  # (N, 10) logits

    def pool(self, x):
        """MaxPool2d(2): 2x2 windows, stride 2, odd edges dropped."""
        return nn.max_pool(x, (2, 2), strides=(2, 2))


def count_parameters(params) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(params))
