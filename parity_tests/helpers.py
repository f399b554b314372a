"""Helpers shared by the parity tests: models and states built by the trainers' own factories."""

from __future__ import annotations

import os

import jax
import torch

from common.config import TrainConfig
from flax_impl.convert import torch_to_flax
from torch_impl import training as torch_training

# PARITY_DEVICE=gpu runs these tests on the GPU (benchmarks/gpu_check.sh does, for test_numerics):
# torch on CUDA, JAX on its default backend, both at full float32 precision (parity_tests/conftest.py).
ON_GPU = os.environ.get("PARITY_DEVICE") == "gpu"
TORCH_DEVICE = torch.device("cuda" if ON_GPU else "cpu")
JAX_DEVICE = jax.devices()[0] if ON_GPU else jax.devices("cpu")[0]


def torch_model_and_flax_params(k: int = 3, seed: int = 0):
    """torch_impl's model as its trainer creates it (seeded init), and the same weights as Flax params."""
    model = torch_training.create_model(TrainConfig("torch", kernel_size=k, seed=seed), TORCH_DEVICE)
    return model, torch_to_flax(torch_training.state_dict_numpy(model))
