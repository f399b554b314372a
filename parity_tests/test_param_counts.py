"""(2) Parameter counts per layer and in total: equal across frameworks and to the closed form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from common.arch import LAYERS, param_counts
from flax import nnx

from flax_impl.model import Convnet as FlaxConvnet
from flax_impl.nnx_model import Convnet as NnxConvnet
from torch_impl.model import Convnet as TorchConvnet


def torch_counts(k: int) -> dict[str, int]:
    counts = {layer: 0 for layer in LAYERS}
    for name, p in TorchConvnet(k).named_parameters():
        counts[name.split(".")[0]] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def flax_counts(k: int, api: str = "linen") -> dict[str, int]:
    if api == "nnx":
        params = nnx.to_pure_dict(nnx.state(NnxConvnet(k, rngs=nnx.Rngs(0)), nnx.Param))
    else:
        params = FlaxConvnet(k).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    counts = {layer: sum(int(a.size) for a in jax.tree.leaves(params[layer])) for layer in LAYERS}
    assert set(params) == set(LAYERS)  # no parameters outside the four named layers
    counts["total"] = sum(counts.values())
    return counts


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_counts_agree_per_layer_and_in_total(k):
    assert torch_counts(k) == flax_counts(k) == flax_counts(k, "nnx") == param_counts(k)


def test_reference_count():
    assert torch_counts(3)["total"] == flax_counts(3)["total"] == flax_counts(3, "nnx")["total"] == 225_034
