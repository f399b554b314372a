"""The kit (parity/) catches the traps real ports fall into: each one planted in an example's JAX side
makes the proof fail, at the check and the first layer or step where the sides split (issue #27's
list); and its reporting says where and with which values."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx

from examples.bn_net import jax_model as bn_jax
from examples.bn_net.test_proof import PORT as BN_PORT
from examples.mnist_net import jax_model as mnist_jax
from examples.mnist_net.test_proof import PORT as MNIST_PORT
from parity.checks import Proof, first_failure
from parity.compare import Split, first_split
from parity import same_names
from parity.weights import map_problems


def jax_side(port, **changes):
    return dataclasses.replace(port, jax=dataclasses.replace(port.jax, **changes))


def flax_batchnorm(**settings):
    """nnx.BatchNorm as a port might write it, in place of the torch-semantics BatchNorm."""
    return lambda seed: bn_jax.model(seed, norm=lambda n: nnx.BatchNorm(n, rngs=nnx.Rngs(0), **settings))


class AlwaysOnDropout(nnx.Dropout):
    """A dropout whose call forces deterministic=False: what a mis-plumbed `train` flag does."""

    def __call__(self, x, **kwargs):
        return super().__call__(x, deterministic=False)


def dropout_on_in_eval(seed):
    model = mnist_jax.model(seed)
    model.dropout1 = AlwaysOnDropout(0.25, rngs=nnx.Rngs(seed))
    return model


def keep_for_drop(seed):
    model = mnist_jax.model(seed)
    model.dropout1 = nnx.Dropout(0.75, rngs=nnx.Rngs(seed))  # Keras/TF1 "keep_prob" read as the rate
    return model


TRAPS = {  # name: (port with the trap, the check that must catch it first, words its message must hold)
    "BatchNorm momentum copied from torch (0.1)": (
        jax_side(BN_PORT, model=flax_batchnorm(momentum=0.1)), "forward_train", "first split at bn1.running_mean"),
    "BatchNorm's biased running variance (Flax's, momentum right)": (
        jax_side(BN_PORT, model=flax_batchnorm(momentum=0.9)), "forward_train", "first split at bn1.running_var"),
    "BatchNorm eps 1e-3 instead of 1e-5": (
        jax_side(BN_PORT, model=lambda seed: bn_jax.model(seed, norm=lambda n: bn_jax.BatchNorm(n, eps=1e-3))),
        "forward_eval", "first split at bn1"),
    "dropout active in eval mode": (
        jax_side(MNIST_PORT, model=dropout_on_in_eval), "dropout", "eval mode: first split at dropout1"),
    "keep probability for drop probability": (
        jax_side(MNIST_PORT, model=keep_for_drop), "dropout", "train mode: first split at dropout1"),
    "StepLR stepped per batch instead of per epoch": (
        jax_side(MNIST_PORT, schedule=lambda spe: mnist_jax.schedule(1),
                 optimizer=lambda spe: mnist_jax.optimizer(1)), "schedule", "first split at step 2 (epoch 1)"),
    "Adadelta's rho 0.95 (the paper's) for torch's 0.9": (
        jax_side(MNIST_PORT, optimizer=lambda spe: optax.adadelta(mnist_jax.schedule(spe), rho=0.95, eps=1e-6)),
        "optimizer", "first split at step 1"),
}


@pytest.mark.realdata
@pytest.mark.parametrize("trap", list(TRAPS))
def test_the_proof_fails_on_each_trap_where_it_splits(real_data, trap):
    port, check, words = TRAPS[trap]
    failure = first_failure(Proof(port, real_data))
    assert failure is not None, f"{trap}: the proof passed"
    assert failure[0] == check and words in failure[1], failure


@pytest.mark.realdata
def test_stepLR_as_optax_exponential_decay_in_float32_is_the_same_schedule(real_data):
    """Issue #32 finding 8: optax computes 0.7 as 0.69999999 in float32, and torch's float32 optimizer
    rounds the rate to float32 itself; judged to float32 rounding, the schedule and the optimizer
    using it agree (a 1e-12 bound called this a trap)."""
    port = jax_side(MNIST_PORT, schedule=lambda spe: optax.exponential_decay(1.0, spe, 0.7, staircase=True),
                    optimizer=lambda spe: optax.adadelta(optax.exponential_decay(1.0, spe, 0.7, staircase=True),
                                                         rho=0.9, eps=1e-6))
    assert first_failure(Proof(port, real_data), ["schedule", "optimizer"]) is None


def test_a_split_names_the_first_layer_and_its_values():
    a = np.zeros((2, 3))
    b = a.copy()
    b[1, 2] = 0.5
    with pytest.raises(Split, match=r"forward: first split at conv2: max \|torch - JAX\| = 0\.5 > 1e-09 at \[1, 2\]: "
                                    r"torch 0\.0, JAX 0\.5 \(agreeing before it: conv1: 0 <= 1e-09\)"):
        first_split([("conv1", a, a, 1e-9), ("conv2", a, b, 1e-9), ("fc", a, b, 1e-9)], "forward")
    with pytest.raises(Split, match="shapes differ"):
        first_split([("fc", a, a.T, 1.0)], "forward")
    with pytest.raises(Split, match="nan"):
        first_split([("fc", a, a * np.nan, 1.0)], "forward")


def test_the_weight_map_is_checked_both_ways_by_shape():
    weights = same_names({"conv1": "conv", "fc1": "linear"})
    weights["conv2.weight"] = ("params/conv2/kernel", "same")  # a conv kernel left in torch's OIHW layout
    port = dataclasses.replace(MNIST_PORT, weights=weights)
    torch_state = {"conv1.weight": np.zeros((32, 1, 3, 3)), "conv1.bias": np.zeros(32),
                   "conv2.weight": np.zeros((64, 32, 3, 3)), "extra.weight": np.zeros(3),
                   "fc1.weight": np.zeros((128, 9216)), "fc1.bias": np.zeros(128), "bn.num_batches_tracked": 0}
    variables = {"params": {"conv1": {"kernel": np.zeros((3, 3, 1, 32)), "bias": np.zeros(32)},
                            "conv2": {"kernel": np.zeros((3, 3, 32, 64))},
                            "fc1": {"kernel": np.zeros((9216, 128)), "bias": np.zeros(128)},
                            "fc2": {"bias": np.zeros(10)}}}
    assert map_problems(port, torch_state, variables) == [
        "torch's extra.weight (3,) is not in the weight map",
        "conv2.weight (64, 32, 3, 3) as same is (64, 32, 3, 3), but params/conv2/kernel is (3, 3, 32, 64)",
        "JAX's params/fc2/bias (10,) is not in the weight map",
    ]


class LinenNet(linen.Module):
    """mnist_net's port written in Flax Linen: the kit's Linen path (intercepted dropout, a train flag)."""

    dropout_in_train: bool = True

    @linen.compact
    def __call__(self, x, train: bool):
        init = mnist_jax.torch_init
        x = linen.relu(linen.Conv(32, (3, 3), padding="VALID", name="conv1", **init(9))(x))
        x = linen.relu(linen.Conv(64, (3, 3), padding="VALID", name="conv2", **init(32 * 9))(x))
        x = linen.max_pool(x, (2, 2), strides=(2, 2))
        x = linen.Dropout(0.25, deterministic=not (train and self.dropout_in_train), name="dropout1")(x)
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        x = linen.relu(linen.Dense(128, name="fc1", **init(9216))(x))
        x = linen.Dropout(0.5, deterministic=not train, name="dropout2")(x)
        return jax.nn.log_softmax(linen.Dense(10, name="fc2", **init(128))(x), axis=1)


def linen_port(**settings):
    def model(seed):
        module = LinenNet(**settings)
        key = jax.random.key(seed)
        return module, module.init({"params": key, "dropout": key}, jnp.zeros((1, 28, 28, 1)), train=False)
    return jax_side(MNIST_PORT, api="linen", model=model)


@pytest.mark.realdata
def test_a_linen_port_is_proven_and_its_dropout_trap_caught(real_data):
    """The same port in Linen passes the checks that exercise the Linen path (dropout masks through
    nn.intercept_methods, the train flag, autodiff of module.apply); dropout off in train mode fails."""
    names = ["weight_map", "init", "dropout", "forward_eval", "forward_train", "loss_and_gradients",
             "trajectory_float64"]
    assert first_failure(Proof(linen_port(), real_data), names) is None
    failure = first_failure(Proof(linen_port(dropout_in_train=False), real_data), names)
    assert failure[0] == "dropout" and "train mode: first split at dropout1" in failure[1], failure
