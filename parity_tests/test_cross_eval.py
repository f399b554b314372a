"""(8) A checkpoint trained in one framework (torch, Flax Linen, Flax NNX) scores the same test loss and
number of correct predictions in another."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from common.checkpoint import load_weights
from common.config import TrainConfig
from data import to_float
from flax_impl import train as flax_train
from flax_impl.convert import torch_to_flax
from flax_impl.model import Convnet as FlaxConvnet
from torch_impl import train as torch_train
from torch_impl import training as torch_training
from torch_impl.model import Convnet as TorchConvnet

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

# A prediction may flip only where the top two logits are tied to within float32 summation noise.
FLOAT_ORDER_MARGIN = 1e-4
LOSS_RTOL = 1e-5  # measured: ~1e-7 apart over 10,000 test images


def evaluate_in(trainer: str, checkpoint, real_data) -> dict:
    """--eval-only in torch_impl, or in flax_impl with --api linen ("flax") or --api nnx ("nnx")."""
    if trainer == "torch":
        config = TrainConfig("torch", eval_only=True, checkpoint=str(checkpoint))
        return torch_train.evaluate_checkpoint(config, real_data, torch.device("cpu"))
    config = TrainConfig("flax", eval_only=True, checkpoint=str(checkpoint), api="nnx" if trainer == "nnx" else "linen")
    return flax_train.evaluate_checkpoint(config, real_data, jax.devices("cpu")[0])


def logits_both(checkpoint, images):
    weights = load_weights(checkpoint, 3)
    model = TorchConvnet(3)
    torch_training.load_state_dict_numpy(model, weights)
    x = to_float(images)
    with torch.no_grad():
        t = model(torch.from_numpy(x)[:, None]).numpy()
    f = np.asarray(FlaxConvnet(3).apply(torch_to_flax(weights), x[..., None]))
    return t, f


def top2_margin(logits):
    s = np.sort(logits, axis=1)
    return s[:, -1] - s[:, -2]


@pytest.mark.parametrize("trained_in,evaluated_in", [("torch", "flax"), ("flax", "torch"), ("torch", "nnx"),
                                                     ("nnx", "torch"), ("nnx", "flax"), ("flax", "nnx")])
def test_cross_framework_evaluation(one_epoch_runs, real_data, trained_in, evaluated_in, capsys):
    summary, out = one_epoch_runs[trained_in]
    result = evaluate_in(evaluated_in, out / "model.safetensors", real_data)
    # The same weights give the same mean test loss in the other framework, to float32 summation.
    assert abs(result["test_loss"] - summary["test_loss"]) <= LOSS_RTOL * summary["test_loss"], (result, summary)
    if result["test_correct"] == summary["test_correct"]:
        return
    # Only a float-order tie may explain a difference, and at most 1 in 10,000.
    assert abs(result["test_correct"] - summary["test_correct"]) <= 1
    t, f = logits_both(out / "model.safetensors", real_data.test_images)
    flipped = np.nonzero(t.argmax(1) != f.argmax(1))[0]
    assert len(flipped) <= 1 and np.all(top2_margin(t[flipped]) < FLOAT_ORDER_MARGIN), flipped
