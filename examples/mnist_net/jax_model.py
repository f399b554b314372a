"""The JAX port of pytorch/examples' MNIST `Net` in Flax NNX, and its recipe in Optax.

Line by line against torch_model.py:
- nn.Conv2d(1, 32, 3, 1)  -> nnx.Conv(1, 32, (3, 3), padding="VALID")  (NNX pads "SAME" by default)
- F.max_pool2d(x, 2)      -> nnx.max_pool(x, (2, 2), strides=(2, 2))   (the stride defaults to 1)
- nn.Dropout(p)           -> nnx.Dropout(rate=p)                        (both: p is the drop probability)
- torch.flatten(x, 1)     -> NHWC to NCHW, then reshape                 (so fc1's weight maps by a transpose)
- torch's default init    -> U(+-1/sqrt(fan_in)) for weights and biases
- Adadelta(lr=1.0)        -> optax.adadelta(lr, rho=0.9, eps=1e-6)      (torch's defaults, written out)
- StepLR(1, gamma=0.7)    -> lr * gamma ** (step // steps_per_epoch)    (in the parameters' dtype: optax's
                             exponential_decay(staircase=True) computes in float32, 0.7 -> 0.69999999)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from parity.port import normalize

LR, GAMMA = 1.0, 0.7
inputs = normalize(0.1307, 0.3081, "NHWC")


def torch_init(fan_in: int) -> dict:
    """torch's default Conv2d/Linear init: kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)), and biases alike."""
    bound = fan_in**-0.5
    return {"kernel_init": nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            "bias_init": lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)}


class Net(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="VALID", rngs=rngs, **torch_init(1 * 9))
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", rngs=rngs, **torch_init(32 * 9))
        self.dropout1 = nnx.Dropout(0.25, rngs=rngs)
        self.dropout2 = nnx.Dropout(0.5, rngs=rngs)
        self.fc1 = nnx.Linear(9216, 128, rngs=rngs, **torch_init(9216))
        self.fc2 = nnx.Linear(128, 10, rngs=rngs, **torch_init(128))

    def __call__(self, x):  # (N, 28, 28, 1)
        x = nnx.relu(self.conv1(x))  # (N, 26, 26, 32)
        x = nnx.relu(self.conv2(x))  # (N, 24, 24, 64)
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))  # (N, 12, 12, 64)
        x = self.dropout1(x)
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # (N, 9216), channel-major as torch.flatten on NCHW
        x = nnx.relu(self.fc1(x))
        x = self.dropout2(x)
        return jax.nn.log_softmax(self.fc2(x), axis=1)  # (N, 10) log-probabilities


def model(seed: int) -> Net:
    return Net(rngs=nnx.Rngs(seed))


def loss(output, target):
    """F.nll_loss: the mean of minus the log-probability of each sample's label."""
    return -jnp.take_along_axis(output, target[:, None].astype(jnp.int32), axis=1).mean()


def schedule(steps_per_epoch: int):
    return lambda step: LR * GAMMA ** (step // steps_per_epoch)


def optimizer(steps_per_epoch: int) -> optax.GradientTransformation:
    return optax.adadelta(schedule(steps_per_epoch), rho=0.9, eps=1e-6)
