"""Weight maps beyond conv and linear (issue #32, finding 11: "the weight map knows 4-D convs only, no
split or merge (attention's in_proj_weight)"): torch's nn.MultiheadAttention, whose in_proj_weight
holds q, k and v in one (3E, E) tensor, against nnx.MultiHeadAttention, whose query, key and value
kernels are (E, heads, head size) each, described with parity.Split and parity.Layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from parity import JaxSide, Layout, Port, Split, TorchSide, same_layout
from parity.checks import Proof, first_failure

E, H, D = 28, 4, 7  # an image's 28 rows as 28 tokens of 28 features; 4 heads of 7


class TorchAttentionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(E, H, batch_first=True)
        self.fc = nn.Linear(E, 10)

    def forward(self, x):
        out, _ = self.attn(x, x, x, need_weights=False)
        return self.fc(out.mean(1))


class JaxAttentionNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.attn = nnx.MultiHeadAttention(H, E, qkv_features=E, out_features=E, decode=False, rngs=rngs)
        self.fc = nnx.Linear(E, 10, rngs=rngs)

    def __call__(self, x):
        return self.fc(self.attn(x).mean(1))


def torch_model(seed):
    torch.manual_seed(seed)
    return TorchAttentionNet()


def rows(images):
    return images.astype(np.float32) / np.float32(255)


# torch's (out, in) rows i = h * D + d as Flax's (in, heads, head size) kernel, and back
HEADS = Layout("heads", lambda w: w.T.reshape(E, H, D), lambda k: k.reshape(E, H * D).T)
HEAD_BIAS = Layout("head-bias", lambda b: b.reshape(H, D), lambda b: b.reshape(H * D))
OUT = Layout("out-heads", lambda w: w.T.reshape(H, D, E), lambda k: k.reshape(H * D, E).T)


def weights(order=("query", "key", "value"), heads=HEADS):
    return {
        "attn.in_proj_weight": Split(tuple((f"params/attn/{p}/kernel", heads) for p in order)),
        "attn.in_proj_bias": Split(tuple((f"params/attn/{p}/bias", HEAD_BIAS) for p in order)),
        "attn.out_proj.weight": ("params/attn/out/kernel", OUT),
        "attn.out_proj.bias": ("params/attn/out/bias", "same"),
        "fc.weight": ("params/fc/kernel", "linear"),
        "fc.bias": ("params/fc/bias", "same"),
    }


PORT = Port(
    name="attention",
    torch=TorchSide(model=torch_model, loss=F.cross_entropy, optimizer=lambda m: torch.optim.Adam(m.parameters())),
    jax=JaxSide(api="nnx", model=lambda seed: JaxAttentionNet(nnx.Rngs(seed)),
                loss=lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean(),
                optimizer=lambda spe: optax.adam(1e-3)),
    weights=weights(), torch_inputs=rows, jax_inputs=rows, to_jax_layout=same_layout, to_torch_layout=same_layout,
    batch_size=16, epochs=1,
)
CHECKS = ["weight_map", "parameter_counts", "forward_eval", "float32_forward", "loss_and_gradients", "optimizer",
          "trajectory_float64"]


def test_one_torch_tensor_held_as_three_jax_tensors_is_proven(real_data):
    """The split map passes every check it reaches (the two inits differ by design: init is not asked)."""
    assert first_failure(Proof(PORT, real_data), CHECKS) is None


@pytest.mark.parametrize("wrong, check", [
    (weights(order=("query", "value", "key")), "forward_eval"),
    (weights(heads=Layout("heads, not transposed", lambda w: w.reshape(E, H, D), lambda k: k.reshape(E, E))),
     "forward_eval"),
    ({**weights(), "attn.in_proj_weight": Split((("params/attn/query/kernel", HEADS),
                                                 ("params/attn/key/kernel", HEADS)))}, "weight_map"),
])
def test_a_wrong_split_or_layout_is_named(real_data, wrong, check):
    """k and v swapped, the heads laid out without the transpose: the forward parts at fc (the first
    module both sides record); two parts where torch holds three: the weight map says so."""
    failure = first_failure(Proof(dataclasses.replace(PORT, weights=wrong), real_data), CHECKS)
    assert failure is not None and failure[0] == check, failure
