"""The JAX port of torchvision's ResNet-18 (resnet18/torch_model.py) in Flax NNX, and its recipe in Optax.

Line by line against torchvision/models/resnet.py (0.29.1):
- conv3x3(stride=2), padding=1   -> nnx.Conv(..., strides=2, padding=((1, 1), (1, 1)))  (not "SAME": at
                                    stride 2 on an even size SAME pads (0, 1), torch pads (1, 1))
- conv1 7x7, stride 2, padding 3 -> padding=((3, 3), (3, 3)); MaxPool2d(3, 2, padding=1) -> nnx.max_pool
                                    with padding ((1, 1), (1, 1)) (both pad with -inf)
- BatchNorm2d                    -> BatchNorm below: torch's momentum (0.1, the new batch's weight) and its
                                    unbiased running variance; nnx.BatchNorm's defaults are neither
- kaiming_normal_(fan_out, relu) -> variance_scaling(2, "fan_out", "normal") (a plain normal, as torch's;
                                    "truncated_normal" would be another distribution)
- nn.Sequential of blocks        -> nnx.List (so the names stay layer1.0.conv1, downsample.0, ...)
- AdaptiveAvgPool2d(1), flatten  -> mean over H and W
- nn.Linear's default init       -> U(+-1/sqrt(fan_in)) for weight and bias
- SGD(weight_decay=5e-4)         -> add_decayed_weights before sgd: torch couples the decay into the
                                    gradient, ahead of momentum (optax.adamw-style decoupling is another
                                    optimizer)
- LambdaLR(warmup, cosine)       -> the same factor as a jnp function of optax's step count
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from examples.resnet18.torch_model import EPOCHS, LR, MOMENTUM, STEPS_PER_EPOCH, WARMUP_EPOCHS, WEIGHT_DECAY
from parity.port import normalize

inputs = normalize(0.2860, 0.3530, "NHWC")
KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


class BatchNorm(nnx.Module):
    """torch.nn.BatchNorm2d over the last axis: normalises by the batch's biased variance, keeps the
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
            mean, var = x.mean(axes), x.var(axes)
            n = x.size // x.shape[-1]
            self.mean[...] = (1 - self.momentum) * self.mean[...] + self.momentum * mean
            self.var[...] = (1 - self.momentum) * self.var[...] + self.momentum * var * (n / (n - 1))
        return (x - mean) / jnp.sqrt(var + self.eps) * self.scale[...] + self.bias[...]


def conv(cin: int, cout: int, k: int, stride: int, pad: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(cin, cout, (k, k), strides=stride, padding=((pad, pad), (pad, pad)), use_bias=False,
                    kernel_init=KAIMING_FAN_OUT, rngs=rngs)


class BasicBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, stride: int, rngs: nnx.Rngs):
        self.conv1, self.bn1 = conv(cin, cout, 3, stride, 1, rngs), BatchNorm(cout)
        self.conv2, self.bn2 = conv(cout, cout, 3, 1, 1, rngs), BatchNorm(cout)
        self.downsample = nnx.List([conv(cin, cout, 1, stride, 0, rngs), BatchNorm(cout)]) \
            if stride != 1 or cin != cout else None

    def __call__(self, x):
        identity = x
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            for m in self.downsample:
                identity = m(identity)
        return nnx.relu(out + identity)


class ResNet18(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, num_classes: int = 10):
        self.conv1, self.bn1 = conv(1, 64, 7, 2, 3, rngs), BatchNorm(64)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, stride) in enumerate(widths, start=1):
            setattr(self, f"layer{i}", nnx.List([BasicBlock(cin, cout, stride, rngs), BasicBlock(cout, cout, 1, rngs)]))
        bound = 512**-0.5
        self.fc = nnx.Linear(512, num_classes, rngs=rngs,
                             kernel_init=nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                             bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                                 key, shape, dtype, -bound, bound))

    def __call__(self, x):  # (N, 28, 28, 1)
        x = nnx.relu(self.bn1(self.conv1(x)))  # (N, 14, 14, 64)
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # (N, 7, 7, 64)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = block(x)  # (N, 7, 7, 64) ... (N, 1, 1, 512)
        return self.fc(x.mean((1, 2)))


def model(seed: int) -> ResNet18:
    return ResNet18(nnx.Rngs(seed))


def loss(output, target):
    return optax.softmax_cross_entropy_with_integer_labels(output, target).mean()


def schedule(steps_per_epoch: int = STEPS_PER_EPOCH):
    total, warmup = EPOCHS * steps_per_epoch, WARMUP_EPOCHS * steps_per_epoch

    def rate(count):
        count = jnp.asarray(count).astype(jnp.result_type(float))  # float64 under x64, as torch's rate is
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * (count - warmup) / (total - warmup)))
        return LR * jnp.where(count < warmup, (count + 1) / warmup, cosine)

    return rate


def optimizer(steps_per_epoch: int = STEPS_PER_EPOCH) -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(schedule(steps_per_epoch), MOMENTUM))
