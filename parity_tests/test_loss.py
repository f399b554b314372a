"""(11) The trainers' loss and evaluation: the same loss and logit gradients, on real and extreme
logits, and the same reported test loss, accuracy and predictions, padding included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from flax_impl import steps as flax_steps

from flax_impl import training as flax_training
from flax_impl.placement import as_placement
from parity_tests.helpers import JAX_DEVICE, TORCH_DEVICE, torch_model_and_flax_params
from parity_tests.jax_impls import JAX_IMPL_IDS, JAX_IMPLS
from torch_impl import steps as torch_steps
from torch_impl import training as torch_training

LOSS_RTOL = 1e-6  # float32 log-softmax in two libraries: a few roundings


def extreme_logits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Logits that stress a log-softmax: huge magnitudes, exact ties, one-hot certainty, uniform."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 32)
    cases = {
        "large (+-1e4)": rng.uniform(-1e4, 1e4, (32, 10)),
        "huge (+-1e30)": rng.uniform(-1e30, 1e30, (32, 10)),
        "all equal": np.full((32, 10), 3.0),
        "tied maxima": np.where(np.arange(10) < 2, 50.0, rng.uniform(-5, 5, (32, 10))),
        "certain and right": np.where(np.arange(10) == labels[:, None], 80.0, -80.0),
        "certain and wrong": np.where(np.arange(10) == (labels[:, None] + 1) % 10, 80.0, -80.0),
        "tiny (+-1e-30)": rng.uniform(-1e-30, 1e-30, (32, 10)),
    }
    return {name: (x.astype(np.float32), labels) for name, x in cases.items()}


def losses_and_logit_grads(logits: np.ndarray, labels: np.ndarray):
    """Each trainer's per-sample loss, and the gradient of its batch mean w.r.t. the logits."""
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch_steps.cross_entropy(t_logits, torch.from_numpy(labels))
    t_loss.mean().backward()

    def mean_loss(x):
        return flax_steps.cross_entropy(x, jnp.asarray(labels)).mean()

    f_loss = flax_steps.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    f_grad = jax.grad(mean_loss)(jnp.asarray(logits))
    return (t_loss.detach().numpy(), t_logits.grad.numpy()), (np.asarray(f_loss), np.asarray(f_grad))


def assert_close(t, f, what):
    assert np.all(np.isfinite(t)) and np.all(np.isfinite(f)), f"{what}: non-finite values"
    scale = np.abs(t).max()
    diff = np.abs(t - f).max()
    assert diff <= LOSS_RTOL * scale + 1e-7, f"{what}: max |torch - flax| = {diff:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("case", list(extreme_logits()))
def test_loss_and_its_gradient_on_extreme_logits(case):
    logits, labels = extreme_logits()[case]
    (t_loss, t_grad), (f_loss, f_grad) = losses_and_logit_grads(logits, labels)
    assert_close(t_loss, f_loss, f"{case}: loss")
    assert_close(t_grad, f_grad, f"{case}: gradient w.r.t. the logits")


@pytest.mark.realdata
def test_loss_and_its_gradient_on_real_logits(real_batch):
    images, labels = real_batch
    model, _ = torch_model_and_flax_params(seed=7)
    with torch.no_grad():
        logits = model(torch.from_numpy(images)[:, None]).numpy() * 10  # sharpened, as after training
    (t_loss, t_grad), (f_loss, f_grad) = losses_and_logit_grads(logits, labels)
    assert_close(t_loss, f_loss, "loss")
    assert_close(t_grad, f_grad, "gradient w.r.t. the logits")


@pytest.mark.realdata
@pytest.mark.parametrize("impl", JAX_IMPLS, ids=JAX_IMPL_IDS)
def test_evaluation_reports_the_same_loss_accuracy_and_predictions(real_data, impl):
    """300 test images: the last of flax's evaluation batches is padded (300 = 2 x 128 + 44)."""
    n = 300
    assert n % flax_steps.EVAL_BATCH_SIZE and n % torch_steps.EVAL_BATCH_SIZE
    images, labels = real_data.test_images[:n], real_data.test_labels[:n]
    model, flax_vars = torch_model_and_flax_params(seed=8)
    x, y = torch_training.to_device(images, labels, TORCH_DEVICE)
    loss_t, correct_t, pred_t = torch_steps.evaluate(model, x, y)

    state = flax_training.with_params(impl.train_state(), jax.device_put(flax_vars["params"]))
    test_x, test_y = flax_training.device_arrays(images, labels, JAX_DEVICE, pad_to=flax_steps.EVAL_BATCH_SIZE)
    eval_fn = flax_training.compile_eval(state, test_x, test_y, as_placement(JAX_DEVICE))
    loss_f, correct_f, pred_f = flax_training.evaluate(eval_fn, state, test_x, test_y, n)

    assert 0 < correct_t < n  # neither trivially right nor wrong: the untrained model guesses
    assert correct_f == correct_t
    np.testing.assert_array_equal(pred_f, pred_t)
    assert len(pred_f) == n
    assert abs(loss_f - loss_t) <= LOSS_RTOL * abs(loss_t), (loss_t, loss_f)
