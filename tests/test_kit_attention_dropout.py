"""The dropout inside Flax's own attention (nnx.MultiHeadAttention, linen.MultiHeadDotProductAttention
with dropout_rate > 0): torch's nn.MultiheadAttention(dropout=p) drops each attention weight inside
F.scaled_dot_product_attention, where the kit gives it its mask; the Flax module draws its own with
jax.random.bernoulli inside its attention function, and the kit gives it the same mask there. Flax's
default, broadcast_dropout=True, draws one mask of shape (1, 1, T, S) for the whole batch and every head
(torch draws one per weight): a real porting trap the train-mode forward must name."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import linen, nnx
from torch import nn

from parity import JaxSide, Port, TorchSide, same_layout
from parity.checks import Proof, check_dropout, check_forward_train, first_failure
from parity.torch_side import SDPA_DROPOUT
from tests.test_kit_layouts import E, H, rows, weights

P = 0.1


class TorchAttentionNet(nn.Module):
    def __init__(self, p=P, twice=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(E, H, dropout=p, batch_first=True)
        self.fc = nn.Linear(E, 10)
        self.twice = twice  # the one attention module called twice in a forward: two masks, in call order

    def forward(self, x):
        # need_weights=False: torch's attention is F.scaled_dot_product_attention(dropout_p=p), as in
        # nn.TransformerEncoderLayer (need_weights=True takes F.dropout instead, which the kit does not see)
        out, _ = self.attn(x, x, x, need_weights=False)
        if self.twice:
            out, _ = self.attn(out, out, out, need_weights=False)
        return self.fc(out.mean(1))


class JaxAttentionNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, rate=P, broadcast=False, deterministic=None, twice=False):
        self.attn = nnx.MultiHeadAttention(H, E, qkv_features=E, out_features=E, decode=False, dropout_rate=rate,
                                           broadcast_dropout=broadcast, rngs=rngs)
        self.fc = nnx.Linear(E, 10, rngs=rngs)
        # fixed in the call, whatever model.train() / model.eval() set (None: as they set it). Not named
        # `deterministic`: model.train() sets every attribute of that name, this one's too
        self.fixed = deterministic
        self.twice = twice

    def __call__(self, x):
        x = self.attn(x, deterministic=self.fixed)
        if self.twice:
            x = self.attn(x, deterministic=self.fixed)
        return self.fc(x.mean(1))


class LinenAttentionNet(linen.Module):
    broadcast: bool = False

    @linen.compact
    def __call__(self, x, train: bool):
        x = linen.MultiHeadDotProductAttention(H, qkv_features=E, out_features=E, dropout_rate=P,
                                               broadcast_dropout=self.broadcast, deterministic=not train,
                                               name="attn")(x)
        return linen.Dense(10, name="fc")(x.mean(1))


def torch_model(seed, twice=False):
    torch.manual_seed(seed)
    return TorchAttentionNet(twice=twice)


def jax_loss(out, y):
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


def nnx_side(**kwargs):
    return JaxSide(api="nnx", model=lambda seed: JaxAttentionNet(nnx.Rngs(seed), **kwargs), loss=jax_loss,
                   optimizer=lambda spe: optax.adam(1e-3))


def linen_side(broadcast=False):
    def model(seed):
        module = LinenAttentionNet(broadcast)
        return module, module.init({"params": jax.random.key(seed)}, jnp.zeros((1, E, E)), train=False)

    return JaxSide(api="linen", model=model, loss=jax_loss, optimizer=lambda spe: optax.adam(1e-3))


PORT = Port(
    name="attention with dropout",
    torch=TorchSide(model=torch_model, loss=F.cross_entropy, optimizer=lambda m: torch.optim.Adam(m.parameters())),
    jax=nnx_side(), weights=weights(), torch_inputs=rows, jax_inputs=rows, to_jax_layout=same_layout,
    to_torch_layout=same_layout, batch_size=16, epochs=1,
)
CHECKS = ["weight_map", "dropout", "forward_eval", "forward_train", "loss_and_gradients", "trajectory_float64"]
NAME = f"attn.{SDPA_DROPOUT}"


def test_flax_attentions_own_dropout_gets_torchs_masks_and_passes(real_data):
    """broadcast_dropout=False at torch's rate: every check passes, the dropout check names torch's
    attention dropout and the Flax module's, each measured at its rate."""
    proof = Proof(PORT, real_data)
    assert first_failure(proof, CHECKS) is None
    lines = check_dropout(proof)
    assert any(line.startswith(f"{NAME} (train)") for line in lines), lines
    assert any(line.startswith(f"{NAME} (eval)") and "JAX 0.0000" in line for line in lines), lines


def test_flax_attentions_default_broadcast_dropout_is_named(real_data):
    """Flax's default broadcast_dropout=True shares one (1, 1, T, S) mask over the batch and heads: the
    train-mode forward splits at the attention and says which setting to change."""
    port = dataclasses.replace(PORT, jax=nnx_side(broadcast=True))
    failure = first_failure(Proof(port, real_data), CHECKS)
    assert failure is not None and failure[0] == "forward_train", failure
    assert "broadcast_dropout" in failure[1] and "attn" in failure[1], failure


@pytest.mark.parametrize("kwargs, check, where", [
    ({"rate": 0.2}, "dropout", f"first split at {NAME}: JAX drops 0.19"),  # survivors x1.25, not x1.11
    ({"deterministic": True}, "dropout", f"first split at {NAME}: JAX drops 0.0000"),  # never drops
    ({"deterministic": False}, "dropout", "dropout in eval mode"),  # drops in eval mode too
])
def test_flax_attention_dropping_at_another_rate_or_in_another_mode_is_named(real_data, kwargs, check, where):
    """Another rate; dropout off in train mode (deterministic=True fixed); on in eval mode too."""
    port = dataclasses.replace(PORT, jax=nnx_side(**kwargs))
    failure = first_failure(Proof(port, real_data), CHECKS)
    assert failure is not None and failure[0] == check and where in failure[1], failure


def test_the_masks_reach_the_flax_attention_in_the_train_mode_forward(real_data):
    """Without the dropout check (which would stop the wrong rate first), the forward with the kit's
    masks splits at the attention for a rate of 0.2: the masks are the same, the survivors' scale not."""
    port = dataclasses.replace(PORT, jax=nnx_side(rate=0.2))
    with pytest.raises(Exception, match="first split at attn"):
        check_forward_train(Proof(port, real_data))


def test_an_attention_called_twice_gets_torchs_two_masks_in_call_order(real_data):
    """One attention module called twice in a forward draws two masks on each side; the kit gives the
    Flax module's second call torch's second mask (Recorder.next_draw), so the correct port passes."""
    torch_side = dataclasses.replace(PORT.torch, model=lambda seed: torch_model(seed, twice=True))
    port = dataclasses.replace(PORT, torch=torch_side, jax=nnx_side(twice=True))
    assert first_failure(Proof(port, real_data), ["dropout", "forward_train", "loss_and_gradients"]) is None


@pytest.mark.parametrize("broadcast", [False, True])
def test_linens_attention_dropout_too(real_data, broadcast):
    port = dataclasses.replace(PORT, jax=linen_side(broadcast))  # the same paths
    failure = first_failure(Proof(port, real_data), ["dropout", "forward_train"])
    if broadcast:
        assert failure is not None and failure[0] == "forward_train" and "broadcast_dropout" in failure[1], failure
    else:
        assert failure is None, failure
