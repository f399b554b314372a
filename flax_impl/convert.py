"""Weights across frameworks: torch state_dict (as NumPy, torch names) <-> Flax params, both ways.

conv kernels OIHW <-> HWIO, dense weights (out, in) <-> (in, out), biases as they are. Flax's
flatten is channel-major like torch's, so dense1 needs nothing beyond the transpose.
"""

from __future__ import annotations

import numpy as np

from common.arch import LAYERS

CONVS = ("conv1", "conv2")


def torch_to_flax(state_dict: dict[str, np.ndarray]) -> dict:
    """{'conv1.weight': OIHW, ...} -> {'params': {'conv1': {'kernel': HWIO, 'bias'}, 'dense1': {'kernel': (in, out), ...}}}."""
    params = {}
    for layer in LAYERS:
        w = np.asarray(state_dict[f"{layer}.weight"])
        b = np.array(state_dict[f"{layer}.bias"])
        kernel = w.transpose(2, 3, 1, 0) if layer in CONVS else w.T
        params[layer] = {"kernel": np.ascontiguousarray(kernel), "bias": b}
    return {"params": params}


def flax_to_torch(variables: dict) -> dict[str, np.ndarray]:
    """The inverse of torch_to_flax; torch_to_flax then flax_to_torch is bitwise identical."""
    params = variables["params"]
    state_dict = {}
    for layer in LAYERS:
        kernel = np.asarray(params[layer]["kernel"])
        weight = kernel.transpose(3, 2, 0, 1) if layer in CONVS else kernel.T
        state_dict[f"{layer}.weight"] = np.ascontiguousarray(weight)
        state_dict[f"{layer}.bias"] = np.array(params[layer]["bias"])
    return state_dict
