"""The JAX implementations the parity proof covers, each through one small adapter: adding an
implementation means adding an adapter here, and every parity test then runs on it.

An adapter gives the tests four things, each through the implementation's own code: a model built
from given weights (and the trainer's own seeded train state), its forward pass with every layer's
output, its loss and gradients by its own framework's autodiff, and its optimizer's step.
Weights travel as Linen-layout pytrees ({'conv1': {'kernel', 'bias'}, ...}), which both Flax APIs
share (flax_impl/convert.py maps them to torch's state_dict).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from common.config import TrainConfig
from flax_impl import training as flax_training
from flax_impl.nnx_steps import NnxTrainState, replace_values
from flax_impl.steps import cross_entropy, make_optimizer
from flax_impl.variants import build_model, build_nnx_model, layer_outputs, nnx_layer_outputs
from parity_tests.helpers import JAX_DEVICE


@dataclass(frozen=True)
class LinenImpl:
    """flax_impl's Linen twin (--api linen) in one model variant."""

    variant: str
    api = "linen"

    def __str__(self) -> str:
        return f"{self.api}-{self.variant}"

    def config(self, **settings) -> TrainConfig:
        return TrainConfig("flax", api=self.api, variant=self.variant, **settings)

    def train_state(self, k: int = 3, seed: int = 0, **settings):
        """The trainer's own seeded train state."""
        return flax_training.create_train_state(self.config(kernel_size=k, seed=seed, **settings), JAX_DEVICE)

    def from_weights(self, params: dict, k: int = 3, lr: float = TrainConfig.lr):
        """A train state holding these weights (any float dtype), its optimizer state made for them."""
        state = self.train_state(k, lr=lr)
        return state.replace(params=params, opt_state=state.tx.init(params))

    def logits(self, params: dict, x: jax.Array, k: int = 3) -> jax.Array:
        return build_model(self.variant, k).apply({"params": params}, x)

    def layer_outputs(self, params: dict, x: jax.Array, k: int = 3) -> dict[str, jax.Array]:
        return layer_outputs(build_model(self.variant, k), {"params": params}, x)

    def loss_and_grads(self, params: dict, images: jax.Array, labels: jax.Array, k: int = 3):
        """The batch's mean cross-entropy and its gradient, by jax.value_and_grad of the functional model."""
        model = build_model(self.variant, k)
        return jax.value_and_grad(lambda p: cross_entropy(model.apply({"params": p}, images), labels).mean())(params)

    def pool(self, x: jax.Array) -> jax.Array:
        """The pool the model itself calls (its `pool` method)."""
        return build_model(self.variant).apply({}, x, method="pool")

    @staticmethod
    @jax.jit
    def apply_gradients(state, grads: dict):
        """One optimizer step: TrainState.apply_gradients."""
        return state.apply_gradients(grads=grads)


@dataclass(frozen=True)
class NnxImpl(LinenImpl):
    """flax_impl's NNX twin (--api nnx) in one model variant."""

    api = "nnx"

    def model(self, params: dict, k: int = 3) -> nnx.Module:
        """The NNX model holding these weights."""
        model = build_nnx_model(self.variant, nnx.Rngs(0), k)
        nnx.update(model, replace_values(nnx.state(model, nnx.Param), params))  # every layer, or an error
        return model

    def from_weights(self, params: dict, k: int = 3, lr: float = TrainConfig.lr):
        model = self.model(params, k)
        return NnxTrainState.split(model, nnx.Optimizer(model, make_optimizer(lr), wrt=nnx.Param))

    def logits(self, params: dict, x: jax.Array, k: int = 3) -> jax.Array:
        return self.model(params, k)(x)

    def layer_outputs(self, params: dict, x: jax.Array, k: int = 3) -> dict[str, jax.Array]:
        return nnx_layer_outputs(self.model(params, k), x)

    def loss_and_grads(self, params: dict, images: jax.Array, labels: jax.Array, k: int = 3):
        """The batch's mean cross-entropy and its gradient, by nnx.value_and_grad of the model."""
        loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(images), labels).mean())(self.model(params, k))
        return loss, nnx.to_pure_dict(grads)

    def pool(self, x: jax.Array) -> jax.Array:
        return build_nnx_model(self.variant, nnx.Rngs(0)).pool(x)

    @staticmethod
    @jax.jit
    def apply_gradients(state: NnxTrainState, grads: dict) -> NnxTrainState:
        """One optimizer step: nnx.Optimizer.update."""
        model, optimizer = state.merge()
        zeros = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))  # the parameters' State structure
        optimizer.update(model, replace_values(zeros, grads, "gradients"))
        return state.updated(model, optimizer)


# Every model a user can select with --api and --variant.
JAX_IMPLS = [LinenImpl("idiomatic"), LinenImpl("custom-vjp"), NnxImpl("idiomatic"), NnxImpl("custom-vjp")]
JAX_IMPL_IDS = [str(impl) for impl in JAX_IMPLS]
