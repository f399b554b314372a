"""(6) Flax's torch-style initialisation draws every layer from torch's default distribution."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from common.arch import state_dict_shapes
from flax_impl.convert import flax_to_torch
from flax_impl.model import Convnet as FlaxConvnet
from flax_impl.nnx_model import Convnet as NnxConvnet
from torch_impl.model import Convnet as TorchConvnet
from torch_impl.training import state_dict_numpy

SEEDS = 12  # pooled, so even conv1's 32 biases give a few hundred draws
SIGMAS = 5.0  # statistical tolerance: a false alarm has odds of about 1 in 3 million per check


def fan_in(name: str, k: int = 3) -> int:
    weight = state_dict_shapes(k)[name.replace(".bias", ".weight")]
    return int(np.prod(weight[1:]))


def torch_draws() -> dict[str, np.ndarray]:
    draws = []
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        draws.append(state_dict_numpy(TorchConvnet(3)))
    return {k: np.concatenate([d[k].ravel() for d in draws]) for k in draws[0]}


def flax_draws(init: str = "torch", api: str = "linen") -> dict[str, np.ndarray]:
    draws = []
    for seed in range(SEEDS):
        if api == "nnx":
            variables = {"params": nnx.to_pure_dict(nnx.state(NnxConvnet(3, init, rngs=nnx.Rngs(seed)), nnx.Param))}
        else:
            variables = FlaxConvnet(3, init).init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
        draws.append(flax_to_torch(jax.device_get(variables)))
    return {k: np.concatenate([d[k].ravel() for d in draws]) for k in draws[0]}


def check_uniform(sample: np.ndarray, bound: float, what: str) -> None:
    """Bounds, mean and standard deviation of U(-bound, bound), within SIGMAS standard errors."""
    n = sample.size
    std = bound / math.sqrt(3)
    assert np.abs(sample).max() <= bound, f"{what}: a draw outside +-{bound}"
    assert np.abs(sample).max() >= bound * (1 - 10 / n), f"{what}: draws never come near +-{bound}"
    assert abs(sample.mean()) <= SIGMAS * std / math.sqrt(n), f"{what}: mean {sample.mean():.3g}"
    # Std error of the sample std of a uniform: std * sqrt((kurtosis - 1) / n) / 2, kurtosis 9/5.
    se_std = std * math.sqrt(0.8 / n) / 2
    assert abs(sample.std() - std) <= SIGMAS * se_std, f"{what}: std {sample.std():.4g} vs {std:.4g}"


@pytest.fixture(scope="module")
def draws():
    return {"torch": torch_draws(), "linen": flax_draws("torch"), "nnx": flax_draws("torch", "nnx")}


@pytest.mark.parametrize("name", list(state_dict_shapes(3)))
def test_every_framework_draws_from_torchs_default(draws, name):
    bound = 1 / math.sqrt(fan_in(name))
    for framework, sample in draws.items():
        check_uniform(sample[name], bound, f"{framework} {name}")


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_flax_own_init_is_different(api):
    """--init flax is lecun_normal with zero biases: the check above must reject it."""
    flax_own = flax_draws("flax", api)
    assert np.all(flax_own["dense1.bias"] == 0)
    with pytest.raises(AssertionError):
        check_uniform(flax_own["dense1.weight"], 1 / math.sqrt(fan_in("dense1.weight")), "flax-init dense1")
