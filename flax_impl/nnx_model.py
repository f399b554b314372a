"""The JAX twin of torch_impl.model in Flax NNX, the Flax that new users are told to write.

NNX maps onto torch almost line for line: layers are built eagerly with their input sizes, hold
their own parameters, and the model is called as model(x). Read it next to torch_impl/model.py:
- nn.Conv2d(1, 32, k)  -> nnx.Conv(1, 32, (k, k), padding="VALID")   (NNX pads "SAME" by default)
- nn.MaxPool2d(2)      -> nnx.max_pool(x, (2, 2), strides=(2, 2))     (NHWC; floor, like torch)
- nn.Flatten()         -> transpose NHWC to NCHW, then reshape         (dense1's weights map by a transpose)
- nn.LazyLinear(128)   -> nnx.Linear(flat_features(k), 128)            (NNX layers are told their input size)
- torch's default init -> the same initialisers as the Linen twin (flax_impl/inits.py)
Its parameters, nnx.state(model, nnx.Param), have the Linen twin's names and shapes, so
flax_impl/convert.py maps them to and from torch's state_dict.
"""

from __future__ import annotations

import jax
from flax import nnx

from common.arch import CONV1_CHANNELS, CONV2_CHANNELS, HIDDEN, NUM_CLASSES, flat_features, spatial_sizes
from flax_impl.inits import initializers


class Convnet(nnx.Module):
    """Conv(1->32,k) ReLU MaxPool2, Conv(32->64,k) ReLU MaxPool2, Flatten, Linear->128 ReLU, Linear 128->10."""

    def __init__(self, conv2d_kernel_size: int = 3, init: str = "torch", *, rngs: nnx.Rngs):
        k = conv2d_kernel_size
        spatial_sizes(k)  # a clear ValueError for a kernel that leaves no spatial extent
        self.conv1 = nnx.Conv(1, CONV1_CHANNELS, (k, k), padding="VALID", rngs=rngs,
                              **initializers(init, 1 * k * k))
        self.conv2 = nnx.Conv(CONV1_CHANNELS, CONV2_CHANNELS, (k, k), padding="VALID", rngs=rngs,
                              **initializers(init, CONV1_CHANNELS * k * k))
        self.dense1 = nnx.Linear(flat_features(k), HIDDEN, rngs=rngs, **initializers(init, flat_features(k)))
        self.dense2 = nnx.Linear(HIDDEN, NUM_CLASSES, rngs=rngs, **initializers(init, HIDDEN))

    def __call__(self, x: jax.Array) -> jax.Array:  # (N, 28, 28, 1) float32 in [0, 1]
        x = self.pool(nnx.relu(self.conv1(x)))  # (N, 26, 26, 32) -> (N, 13, 13, 32) at k = 3
        x = self.pool(nnx.relu(self.conv2(x)))  # (N, 11, 11, 64) -> (N, 5, 5, 64)
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # (N, 1600), channel-major as torch flattens NCHW
        x = nnx.relu(self.dense1(x))  # (N, 128)
        return self.dense2(x)  # (N, 10) logits

    def pool(self, x: jax.Array) -> jax.Array:
        """MaxPool2d(2): 2x2 windows, stride 2, odd edges dropped."""
        return nnx.max_pool(x, (2, 2), strides=(2, 2))
