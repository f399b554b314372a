"""Parity tests run on CPU in float32 with JAX's matmuls at full precision (PARITY_DEVICE=gpu: the
tests that take their device from parity_tests.helpers run on the GPU, TF32 off in both frameworks)."""

from __future__ import annotations

import os

if os.environ.get("PARITY_DEVICE") != "gpu":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
if os.environ.get("PARITY_DEVICE") == "gpu":
    from torch_impl.train import set_numerics

    set_numerics("highest", deterministic=False)  # no TF32 in torch's matmuls and cuDNN convolutions


@pytest.fixture(scope="session")
def real_batch(real_data):
    """64 real training images (float, [0,1]) and labels, in the shared epoch-1 order for seed 0."""
    from data import epoch_order, to_float

    idx = epoch_order(len(real_data.train_labels), seed=0, epoch=1)[:64]
    return to_float(real_data.train_images[idx]), real_data.train_labels[idx]


ACCURACY_SEEDS = list(range(8))  # seeds per framework in the one-epoch sweeps (test_accuracy says why 8)


@pytest.fixture(scope="session")
def one_epoch_sweeps(real_data, tmp_path_factory):
    """Each trainer's sweep, one epoch of seeds 0-7 on the real data: {"torch" | "flax" | "nnx": folder}
    ("flax" is --api linen, the default). Each sweeps one seed after another on the CPU, so each seed
    is bit for bit its --seed run."""
    import torch

    from common.config import TrainConfig
    from flax_impl import sweep as flax_sweep
    from torch_impl import sweep as torch_sweep

    sweeps = {}
    cpu = jax.devices("cpu")[0]
    for name, module, device in (("torch", torch_sweep, torch.device("cpu")), ("flax", flax_sweep, cpu),
                                 ("nnx", flax_sweep, cpu)):
        out = tmp_path_factory.mktemp(f"{name}-sweep")
        framework, api = ("torch", "linen") if name == "torch" else ("flax", "nnx" if name == "nnx" else "linen")
        config = TrainConfig(framework, epochs=1, out_dir=str(out), quiet=True, seeds=ACCURACY_SEEDS, api=api)
        module.train_seeds(config, real_data, device)
        sweeps[name] = out
    return sweeps


@pytest.fixture(scope="session")
def one_epoch_runs(one_epoch_sweeps):
    """Each framework's seed-0 run of one epoch on the real data: {name: (summary, folder)}."""
    import json

    return {name: (json.loads((out / "seed-0" / "summary.json").read_text()), out / "seed-0")
            for name, out in one_epoch_sweeps.items()}
