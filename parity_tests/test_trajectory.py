"""(5) From the same weights and batches, 100 float32 steps of both trainers' own optimizers and
compiled steps give the same losses and final weights, within float32's chaotic drift."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.config import TrainConfig
from data import train_batches
from flax_impl import training as flax_training
from flax_impl.convert import flax_to_torch
from flax_impl.placement import as_placement
from parity_tests.helpers import JAX_DEVICE, TORCH_DEVICE, torch_model_and_flax_params
from parity_tests.jax_impls import JAX_IMPL_IDS, JAX_IMPLS
from torch_impl import steps as torch_steps
from torch_impl import training as torch_training

pytestmark = pytest.mark.realdata

STEPS = 100
# Tolerances, from drift measured on this CPU (torch 2.14, jax 0.10, float32, init seeds 3, 4, 5).
# Adam divides by sqrt(v) + 1e-8, so a parameter whose gradient is near 1e-8 turns float32
# summation-order noise into update differences of ~1e-3 of a step, and max-pool near-ties route
# gradients differently: the two trajectories separate chaotically after a few dozen steps. The
# reference does the same to itself: torch against torch with its initial weights scaled by
# (1 + 2^-23) drifts by up to 7e-3 in loss and 0.02 in relative weight norm over 100 steps.
#   - first 10 steps: JAX vs torch drifted <= 1.6e-5; Adam eps 1e-7 instead of 1e-8 moves them
#     by >= 8e-4. The bound of 1e-4 (the aim) keeps 6x headroom and catches that bug.
#   - all 100 steps: mean drift measured <= 2.9e-3 and max <= 0.021; bounds 0.01 and 0.05.
#   - final weights, relative L2 norm of the difference per tensor: measured <= 0.032; bound 0.1.
EARLY_STEPS, EARLY_LOSS_ATOL = 10, 1e-4
LOSS_MEAN_ATOL, LOSS_MAX_ATOL = 0.01, 0.05
WEIGHT_REL_L2 = 0.1


def torch_trajectory(model, images, labels, batches):
    """The trainer's own optimizer and train_step."""
    optimizer = torch_steps.make_optimizer(model, TrainConfig.lr)
    x, y = torch_training.to_device(images, labels, TORCH_DEVICE)
    losses = []
    for idx in batches:
        loss_sum, _ = torch_steps.train_step(model, optimizer, x[idx], y[idx])
        losses.append(loss_sum.item() / len(idx))
    return np.array(losses), torch_training.state_dict_numpy(model)


def flax_trajectory(impl, params, images, labels, batches):
    """The trainer's own train state and compiled step (its XLA options included)."""
    state = impl.from_weights(jax.device_put(params["params"]))
    x, y = flax_training.device_arrays(images, labels, JAX_DEVICE)
    placement = as_placement(JAX_DEVICE)
    step = flax_training.compile_train_steps(state, x, y, (1, 64), placement)
    losses = []
    for idx in batches:
        state, totals = step(state, flax_training.zero_totals(placement), x, y, jnp.asarray(idx[None], jnp.int32))
        losses.append(float(totals["loss_sum"]) / len(idx))
    return np.array(losses), flax_to_torch(jax.device_get({"params": state.params}))


@pytest.mark.parametrize("impl", JAX_IMPLS, ids=JAX_IMPL_IDS)
def test_100_adam_steps_track_each_other(real_data, impl):
    n = len(real_data.train_labels)
    batches = [b for _, b in zip(range(STEPS), train_batches(n, 64, seed=0, epoch=1))]
    torch_model, flax_params = torch_model_and_flax_params(3, seed=3)
    losses_t, weights_t = torch_trajectory(torch_model, real_data.train_images, real_data.train_labels, batches)
    losses_f, weights_f = flax_trajectory(impl, flax_params, real_data.train_images, real_data.train_labels,
                                          batches)
    loss_drift = np.abs(losses_t - losses_f)
    weight_drift = {k: float(np.linalg.norm(weights_t[k] - weights_f[k]) / np.linalg.norm(weights_t[k]))
                    for k in weights_t}
    print(f"\nper-step loss drift: first {EARLY_STEPS} steps max {loss_drift[:EARLY_STEPS].max():.3g}; "
          f"all {STEPS}: max {loss_drift.max():.3g}, mean {loss_drift.mean():.3g}; final weights, relative L2: "
          + ", ".join(f"{k} {v:.3g}" for k, v in weight_drift.items()))
    assert losses_t[-1] < losses_t[0] - 0.5  # it trained
    assert loss_drift[:EARLY_STEPS].max() <= EARLY_LOSS_ATOL
    assert loss_drift.mean() <= LOSS_MEAN_ATOL and loss_drift.max() <= LOSS_MAX_ATOL
    assert max(weight_drift.values()) <= WEIGHT_REL_L2, weight_drift
