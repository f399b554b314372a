"""The training step can be the script's own on either side (issue #32: "the torch step is fixed ... the
user's own JAX train step is never run"): TorchSide.step (nanoGPT's train.py loop body: its clipping
inside) and JaxSide.train_step (an nnx.jit step over an nnx.Optimizer; a Linen step over a TrainState).
The trajectories then run those steps, with the kit's dropout masks, and a step that is wrong is named
where the training parts."""

from __future__ import annotations

import dataclasses

import jax
import torch
from flax import nnx

from examples.nanogpt import test_proof, torch_model
from parity.checks import Proof, first_failure
from tests.test_kit import linen_port
from tests.test_kit_nanogpt import text  # noqa: F401 - the fortunes fixture

TRAINING = ["trajectory_float64"]  # the float64 trajectory runs both steps; the other training checks reuse them


def proof(port, dataset):
    """One epoch of 4 steps: a wrong step parts at step 1, and the steps run eagerly (jit off) cost."""
    return Proof(port, dataset, trajectory_epochs=1)


def train_py_step(model, optimizer, x, y, clip=True):
    """nanoGPT's train.py, one iteration (no accumulation, no scaler): forward, backward, clip, step."""
    idx, targets = x
    _, loss = model(idx, targets)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), torch_model.GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def nnx_step(updates: int = 1):
    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            _, loss = model(*x)
            return loss
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        for _ in range(updates):
            optimizer.update(model, grads)
        return loss
    return train_step


def own(torch_step=train_py_step, jax_step=None):
    port = test_proof.PORT
    return dataclasses.replace(port, torch=dataclasses.replace(port.torch, step=torch_step),
                               jax=dataclasses.replace(port.jax, train_step=jax_step or nnx_step()))


def test_the_scripts_own_steps_are_run_and_a_wrong_one_named(text):
    """nanoGPT's own torch step and an nnx.jit train step pass the training checks; the same JAX step
    applying its update twice, or the torch step without its clipping, parts at step 1. [Before: the
    kit ran its own steps; with the dispatch to the port's removed, the double update passed.]"""
    assert first_failure(proof(own(), text), TRAINING) is None
    failure = first_failure(proof(own(jax_step=nnx_step(updates=2)), text), ["trajectory_float64"])
    assert failure is not None and "first split at step 1" in failure[1], failure
    no_clip = own(torch_step=lambda *a: train_py_step(*a, clip=False))
    failure = first_failure(proof(no_clip, text), ["trajectory_float64"])
    assert failure is not None and "first split at step 1" in failure[1], failure


def linen_step(updates: int = 1):
    @jax.jit
    def train_step(state, x, y):
        def loss_fn(params):
            out = state.apply_fn({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)})
            return -jax.numpy.take_along_axis(out, y[:, None], axis=1).mean()
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        for _ in range(updates):
            state = state.apply_gradients(grads=grads)
        return state, loss
    return train_step


def test_a_linen_train_step_over_a_train_state_is_run(real_data):
    """The same for Linen: a jitted (state, x, y) -> (state, loss) step on a TrainState, its dropout
    given the kit's masks through the interceptor; two updates a step part at step 1."""
    port = linen_port()
    right = dataclasses.replace(port, jax=dataclasses.replace(port.jax, train_step=linen_step()))
    assert first_failure(proof(right, real_data), ["trajectory_float64"]) is None
    wrong = dataclasses.replace(port, jax=dataclasses.replace(port.jax, train_step=linen_step(updates=2)))
    failure = first_failure(proof(wrong, real_data), ["trajectory_float64"])
    assert failure is not None and "first split at step 1" in failure[1], failure
