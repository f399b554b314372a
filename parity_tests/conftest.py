"""Parity tests run on CPU in float32 with JAX's matmuls at full precision."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def real_batch(real_data):
    """64 real training images (float, [0,1]) and labels, in the shared epoch-1 order for seed 0."""
    from data import epoch_order, to_float

    idx = epoch_order(len(real_data.train_labels), seed=0, epoch=1)[:64]
    return to_float(real_data.train_images[idx]), real_data.train_labels[idx]


@pytest.fixture(scope="session")
def one_epoch_runs(real_data, tmp_path_factory):
    """Each framework trains one epoch on the real data from its own init, seed 0: {name: (summary, dir)}."""
    import torch

    from common.config import TrainConfig
    from flax_impl import train as flax_train
    from torch_impl import train as torch_train

    runs = {}
    for name, module, device in (("torch", torch_train, torch.device("cpu")),
                                 ("flax", flax_train, jax.devices("cpu")[0])):
        out = tmp_path_factory.mktemp(name)
        config = TrainConfig(name, epochs=1, seed=0, out_dir=str(out), quiet=True)
        runs[name] = (module.train_and_evaluate(config, real_data, device), out)
    return runs
