"""(1) Every layer's output has the same shape in both frameworks and matches the closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.arch import layer_shapes
from parity_tests.helpers import torch_model_and_flax_params
from parity_tests.jax_impls import JAX_IMPL_IDS, JAX_IMPLS

LAYER_ORDER = ["conv1", "pool1", "conv2", "pool2", "flatten", "dense1", "dense2"]


def nhwc_to_nchw(shape: tuple) -> tuple:
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


@pytest.mark.parametrize("impl", JAX_IMPLS, ids=JAX_IMPL_IDS)
@pytest.mark.parametrize("k", [3, 5, 7])
def test_every_layer_has_the_same_shape(k, impl):
    torch_model, flax_vars = torch_model_and_flax_params(k)
    x = np.random.default_rng(k).random((4, 28, 28), dtype=np.float32)
    with torch.no_grad():
        t = torch_model.layer_outputs(torch.from_numpy(x)[:, None])
    f = impl.layer_outputs(flax_vars["params"], x[..., None], k)
    expected = layer_shapes(k, batch=4)
    assert list(t) == list(f) == list(expected) == LAYER_ORDER
    for name in LAYER_ORDER:
        assert tuple(t[name].shape) == expected[name], name
        assert nhwc_to_nchw(f[name].shape) == expected[name], name


def test_closed_form_at_k3():
    s = layer_shapes(3, batch=1)
    assert s["conv1"] == (1, 32, 26, 26) and s["pool1"] == (1, 32, 13, 13)
    assert s["conv2"] == (1, 64, 11, 11) and s["pool2"] == (1, 64, 5, 5)
    assert s["flatten"] == (1, 1600) and s["dense1"] == (1, 128) and s["dense2"] == (1, 10)
