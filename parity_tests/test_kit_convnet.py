"""The convnet's port described once for the kit (parity/), for each JAX implementation a user can select:
every check of the kit runs on it (the layer-by-layer, float64, optimizer, trajectory, float32-drift and
cross-evaluation checks the other files here make in the convnet's own terms), through the trainers'
own functions, their training steps included (the trajectories run torch_impl's and flax_impl's train_step,
so a bug in the trainers' loss reaches the kit: a summed loss, which the kit's own step had hidden, issue
#33's catalogue). The accuracy over seeds is test_accuracy.py's (8 seeds, the trainers' own sweeps)."""

from __future__ import annotations

import jax
import pytest
import torch

from common.config import TrainConfig
from flax_impl import nnx_steps
from flax_impl import steps as flax_steps
from flax_impl import training as flax_training
from flax_impl.variants import build_model
from parity import JaxSide, Port, TorchSide, normalize, same_names
from parity.checks import CHECKS, Proof
from torch_impl import steps as torch_steps
from torch_impl import training as torch_training

pytestmark = pytest.mark.realdata

# Both APIs and both variants, in two of the four pairs (the other files here cover all four; the four
# took 85 s on a 2-core CPU, two 40 s): Linen as a reader writes it, and the NNX custom-vjp model, whose
# custom VJPs are where a gradient bug would hide.
IMPLS = [("linen", "idiomatic"), ("nnx", "custom-vjp")]


def torch_model(seed: int):
    return torch_training.create_model(TrainConfig("torch", seed=seed), torch.device("cpu"))


def jax_model(api: str, variant: str):
    def build(seed: int):
        state = flax_training.create_train_state(TrainConfig("flax", api=api, variant=variant, seed=seed),
                                                 jax.devices("cpu")[0])
        if api == "nnx":
            return state.merge()[0]
        return build_model(variant), {"params": state.params}
    return build


def torch_step(model, optimizer, x, y):
    """torch_impl's step; it returns the batch's summed loss, and steps on the mean."""
    loss_sum, _ = torch_steps.train_step(model, optimizer, x, y)
    return loss_sum / y.shape[0]


def linen_step(state, x, y):
    state, metrics = flax_steps.train_step(state, {"images": x, "labels": y})
    return state, metrics["loss_sum"] / y.shape[0]


def nnx_step(model, optimizer, x, y):
    return nnx_steps.train_step(model, optimizer, {"images": x, "labels": y})["loss_sum"] / y.shape[0]


def convnet_port(api: str, variant: str) -> Port:
    return Port(
        name=f"convnet ({api}, {variant})",
        torch=TorchSide(model=torch_model, loss=lambda out, y: torch_steps.cross_entropy(out, y).mean(),
                        optimizer=lambda model: torch_steps.make_optimizer(model, TrainConfig.lr), step=torch_step),
        jax=JaxSide(api=api, model=jax_model(api, variant), loss=lambda out, y: flax_steps.cross_entropy(out, y).mean(),
                    optimizer=lambda steps_per_epoch: flax_steps.make_optimizer(TrainConfig.lr), train_kwarg=None,
                    train_step=nnx_step if api == "nnx" else linen_step),
        weights=same_names({"conv1": "conv", "conv2": "conv", "dense1": "linear", "dense2": "linear"}),
        torch_inputs=normalize(0.0, 1.0, "NCHW"),  # data.to_float: ToTensor's x / 255
        jax_inputs=normalize(0.0, 1.0, "NHWC"),
    )


PROOFS: dict = {}


@pytest.mark.parametrize("check", [name for name, _ in CHECKS])
@pytest.mark.parametrize("impl", IMPLS, ids=[f"{api}-{variant}" for api, variant in IMPLS])
def test_the_kit_proves_the_convnet(real_data, impl, check):
    proof = PROOFS.setdefault(impl, Proof(convnet_port(*impl), real_data))
    for line in dict(CHECKS)[check](proof):
        print(line)
