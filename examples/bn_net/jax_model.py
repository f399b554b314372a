"""The JAX port of bn_net/torch_model.py in Flax NNX, with torch's BatchNorm reproduced.

nnx.BatchNorm is not torch's BatchNorm with other names. Copied over, `momentum=0.1` means the
opposite (Flax weights the old statistics by momentum, torch the new batch), and Flax keeps the
batch's biased variance where torch keeps the unbiased one (n / (n - 1)). Measured on this model
(README.md): eval-mode predictions agree with torch's on far from all test images until both are
fixed. BatchNorm below is torch's semantics in 20 lines, with Flax's names (scale, bias, mean, var).
- nn.Conv2d(.., 3, padding=1) -> nnx.Conv(.., (3, 3), padding=1)   (explicit: NNX pads "SAME" by default)
- nn.BatchNorm2d / 1d        -> BatchNorm over the last axis         (NHWC, or (N, features))
- torch.flatten(x, 1)        -> NHWC to NCHW, then reshape           (fc1's weight maps by a transpose)
- SGD(lr, momentum=0.9)      -> optax.sgd(lr, momentum=0.9)          (the same heavy-ball form)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from parity.port import normalize

LR, MOMENTUM = 0.05, 0.9
inputs = normalize(0.2860, 0.3530, "NHWC")


class BatchNorm(nnx.Module):
    """torch.nn.BatchNorm1d/2d over the last axis: normalises by the batch's biased variance, keeps the
    unbiased one; momentum (0.1) is the new batch's weight, as in torch; eps 1e-5."""

    def __init__(self, num_features: int, *, momentum: float = 0.1, eps: float = 1e-5):
        self.scale = nnx.Param(jnp.ones((num_features,)))
        self.bias = nnx.Param(jnp.zeros((num_features,)))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
        self.var = nnx.BatchStat(jnp.ones((num_features,)))
        self.momentum, self.eps = momentum, eps
        self.use_running_average = False  # model.eval() sets it, model.train() clears it

    def __call__(self, x):
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean, var = x.mean(axes), x.var(axes)  # the batch's biased variance normalises it
            n = x.size // x.shape[-1]
            self.mean[...] = (1 - self.momentum) * self.mean[...] + self.momentum * mean
            self.var[...] = (1 - self.momentum) * self.var[...] + self.momentum * var * (n / (n - 1))
        return (x - mean) / jnp.sqrt(var + self.eps) * self.scale[...] + self.bias[...]


def torch_init(fan_in: int) -> dict:
    """torch's default Conv2d/Linear init: U(+-1/sqrt(fan_in)) for weights and biases."""
    bound = fan_in**-0.5
    return {"kernel_init": nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            "bias_init": lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)}


class BnNet(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs, norm=BatchNorm):
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding=1, rngs=rngs, **torch_init(1 * 9))
        self.bn1 = norm(32)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding=1, rngs=rngs, **torch_init(32 * 9))
        self.bn2 = norm(64)
        self.fc1 = nnx.Linear(64 * 7 * 7, 128, rngs=rngs, **torch_init(64 * 7 * 7))
        self.bn3 = norm(128)
        self.fc2 = nnx.Linear(128, 10, rngs=rngs, **torch_init(128))

    def __call__(self, x):  # (N, 28, 28, 1)
        x = nnx.max_pool(nnx.relu(self.bn1(self.conv1(x))), (2, 2), strides=(2, 2))  # (N, 14, 14, 32)
        x = nnx.max_pool(nnx.relu(self.bn2(self.conv2(x))), (2, 2), strides=(2, 2))  # (N, 7, 7, 64)
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # (N, 3136), channel-major as torch.flatten
        x = nnx.relu(self.bn3(self.fc1(x)))  # (N, 128)
        return self.fc2(x)  # (N, 10) logits


def model(seed: int, norm=BatchNorm) -> BnNet:
    return BnNet(rngs=nnx.Rngs(seed), norm=norm)


def loss(output, target):
    return optax.softmax_cross_entropy_with_integer_labels(output, target).mean()


def optimizer(steps_per_epoch: int) -> optax.GradientTransformation:
    return optax.sgd(LR, momentum=MOMENTUM)
