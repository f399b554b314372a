"""(10) The trainers' own optimizers: the same hyperparameters, and the same updates and moment
estimates from the same parameters and gradients, step after step, bias correction included."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
import torch

from common.config import TrainConfig
from flax_impl import steps as flax_steps
from flax_impl import training as flax_training
from flax_impl.convert import flax_to_torch, torch_to_flax
from parity_tests.helpers import torch_model_and_flax_params
from parity_tests.jax_impls import LinenImpl, NnxImpl
from torch_impl import steps as torch_steps
from torch_impl import training as torch_training

LR = 1e-3
OPTIMIZERS = [LinenImpl("idiomatic"), NnxImpl("idiomatic")]  # the variant does not touch the optimizer
# torch.optim.Adam's defaults, as the names of its param_group.
TORCH_EXPECTED = {"lr": LR, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
                  "maximize": False, "decoupled_weight_decay": False}
# Bounds from the sequence below, measured on this CPU (per tensor, relative to its largest value):
# - moments: <= 2.7e-7 apart (a few float32 roundings of the same formula); bound 1e-6;
# - updates, beyond each side's half-ulp rounding of its new parameter: <= 1.0e-5 apart, since
#   torch computes Adam's bias corrections in double and optax in float32, where 1 - 0.999**t
#   carries a relative error of ~1e-5 at t = 1; bound 3e-5. Changing lr by 1e-4, b1 or b2 in the
#   fourth digit, or eps by 10% moves them by far more.
MOMENT_RTOL = 1e-6
UPDATE_RTOL = 3e-5
# One probe step from these parameters with these gradients reveals Adam's hyperparameters:
# g = 1 gives mu = (1 - b1), nu = (1 - b2) and an update of -lr / (1 + eps); g = 1e-8 (= eps)
# gives an update of -lr * g / (g + eps); g = 0 on a non-zero parameter shows any weight decay.
PROBE_PARAMS = np.array([0.0, 0.0, 1.0], np.float32)
PROBE_GRADS = np.array([1.0, 1e-8, 0.0], np.float32)


def hyperparameters_in_effect(update, mu, nu) -> dict[str, float]:
    """lr, b1, b2, eps and weight decay of an Adam step, inferred from what it did to the probe."""
    update, mu, nu = (np.asarray(a, np.float64) for a in (update, mu, nu))
    lr = -update[0] * (1 + 1e-8)
    return {"lr": lr, "b1": 1 - mu[0], "b2": 1 - nu[0], "eps": PROBE_GRADS[1] * (-lr / update[1] - 1),
            "weight_decay": -update[2] / lr}


def torch_probe(optimizer_factory):
    p = torch.nn.Parameter(torch.from_numpy(PROBE_PARAMS.copy()))
    optimizer = optimizer_factory([p])
    p.grad = torch.from_numpy(PROBE_GRADS.copy())
    optimizer.step()
    state = optimizer.state[p]
    return p.detach().numpy() - PROBE_PARAMS, state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()


def flax_probe(tx):
    params = {"w": jax.numpy.asarray(PROBE_PARAMS)}
    updates, opt_state = tx.update({"w": jax.numpy.asarray(PROBE_GRADS)}, tx.init(params), params)
    adam = optax.tree_utils.tree_get(opt_state, "ScaleByAdamState")
    return updates["w"], adam.mu["w"], adam.nu["w"]


def test_hyperparameters_in_effect_are_torchs_defaults_on_both_sides():
    model, _ = torch_model_and_flax_params()
    optimizer = torch_steps.make_optimizer(model, LR)
    assert type(optimizer) is torch.optim.Adam
    (group,) = optimizer.param_groups
    assert {k: group[k] for k in TORCH_EXPECTED if k in group} == TORCH_EXPECTED
    # What each trainer's optimizer does, read from one probe step of that very optimizer.
    config = TrainConfig("torch", lr=LR)
    t = hyperparameters_in_effect(*torch_probe(
        lambda params: type(optimizer)(params, **{k: group[k] for k in TORCH_EXPECTED})))
    f = hyperparameters_in_effect(*flax_probe(flax_steps.make_optimizer(config.lr)))
    want = {"lr": LR, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    for name, value in want.items():
        for side, got in (("torch", t), ("flax", f)):
            assert abs(got[name] - value) <= 1e-4 * value + 1e-9, f"{side} {name}: {got[name]!r}, want {value!r}"
        assert abs(t[name] - f[name]) <= 1e-4 * value + 1e-9, f"{name}: torch {t[name]!r}, flax {f[name]!r}"


def gradient_sequence(model, real_data) -> list[dict[str, np.ndarray]]:
    """Real gradients (three real batches), then awkward ones: zeros, tiny, huge, mixed signs; then real again."""
    images = torch.from_numpy(real_data.train_images[:192].astype(np.float32) / 255)[:, None]
    labels = torch.from_numpy(real_data.train_labels[:192])
    real = []
    for s in range(0, 192, 64):
        model.zero_grad()
        torch_steps.cross_entropy(model(images[s : s + 64]), labels[s : s + 64]).mean().backward()
        real.append({n: p.grad.numpy().copy() for n, p in model.named_parameters()})
    zeros = {n: np.zeros_like(g) for n, g in real[0].items()}
    rng = np.random.default_rng(0)
    signs = {n: rng.choice([-1.0, 1.0], g.shape).astype(np.float32) for n, g in real[0].items()}

    def scaled(g, factor):
        return {n: (v * factor).astype(np.float32) for n, v in g.items()}

    return [real[0], real[1], zeros, scaled(real[2], 1e-9), scaled(real[0], 1e-12), zeros,
            scaled(real[1], 1e8), {n: real[2][n] * signs[n] for n in signs}, scaled(real[0], 1e-6),
            real[1], real[2], zeros]


@pytest.mark.realdata
@pytest.mark.parametrize("impl", OPTIMIZERS, ids=[impl.api for impl in OPTIMIZERS])
def test_same_updates_and_moments_step_after_step(real_data, impl):
    """Each API's own optimizer step: TrainState.apply_gradients (Linen), nnx.Optimizer.update (NNX)."""
    model, flax_vars = torch_model_and_flax_params(seed=4)
    grads = gradient_sequence(model, real_data)
    optimizer = torch_steps.make_optimizer(model, LR)
    state = impl.from_weights(jax.device_put(flax_vars["params"]), lr=LR)
    apply = impl.apply_gradients
    for step, g in enumerate(grads, start=1):
        before_t = {k: v.copy() for k, v in torch_training.state_dict_numpy(model).items()}  # numpy() shares memory
        before_f = flax_to_torch(jax.device_get({"params": state.params}))
        for name, p in model.named_parameters():
            p.grad = torch.from_numpy(g[name].copy())
        optimizer.step()
        state = apply(state, torch_to_flax(g)["params"])
        after_t = torch_training.state_dict_numpy(model)
        after_f = flax_to_torch(jax.device_get({"params": state.params}))
        count_t, mu_t, nu_t = torch_training.adam_state_numpy(model, optimizer)
        count_f, mu_f, nu_f = flax_training.adam_state_numpy(state)
        assert count_t == count_f == step
        for name in before_t:
            # Each side's update to its own parameters, in float64 (a float32 difference is exact
            # there); each side rounded its new parameter once, to half an ulp, so the bound is an
            # ulp plus float32 noise in the update
            # (UPDATE_RTOL, relative to the tensor's largest update).
            du_t = after_t[name] - before_t[name].astype(np.float64)
            du_f = after_f[name] - before_f[name].astype(np.float64)
            ulp = np.spacing(np.maximum(np.abs(after_t[name]), np.abs(after_f[name]))).astype(np.float64)
            err = np.abs(du_t - du_f) - (ulp + UPDATE_RTOL * np.abs(du_t).max())
            assert err.max() <= 0, f"step {step}, {name}: updates differ by {np.abs(du_t - du_f).max():.3g}"
            for what, t, f in (("exp_avg", mu_t, mu_f), ("exp_avg_sq", nu_t, nu_f)):
                scale = np.abs(t[name]).max()
                diff = np.abs(t[name] - f[name]).max()
                assert diff <= MOMENT_RTOL * scale, f"step {step}, {name} {what}: {diff:.3g} apart (scale {scale:.3g})"
