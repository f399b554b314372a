"""Helpers shared by the parity tests."""

from __future__ import annotations

import torch

from flax_impl.convert import torch_to_flax
from torch_impl.model import Convnet as TorchConvnet
from torch_impl.train import state_dict_numpy


def torch_model_and_flax_params(k: int = 3, seed: int = 0):
    """A torch model with seeded default init, and the same weights as Flax params."""
    torch.manual_seed(seed)
    model = TorchConvnet(k)
    return model, torch_to_flax(state_dict_numpy(model))
