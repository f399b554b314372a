"""The kit on nanoGPT as published (examples/nanogpt, issue #32): the traps its port carries, each a
change a porter makes, and where the proof stops for it; and the kit's own parts it needed (tied
weights, the dropout inside F.scaled_dot_product_attention, a model of several inputs and outputs).
The correct port passes every check (examples/nanogpt/test_proof.py); each trap here is one edit of it,
run through the one check that must name it (the checks before it pass on the correct port)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax
import pytest
import torch
from flax import nnx

from examples.nanogpt import data, jax_model, test_proof, torch_model
from parity.checks import Proof, check_dropout, check_weight_map, first_failure
from parity.torch_side import SDPA_DROPOUT

PORT = test_proof.PORT


@pytest.fixture(scope="module")
def text():
    try:
        return data.load(torch_model.CONFIG.block_size)
    except OSError as e:
        pytest.skip(f"fortunes not installed: {e}")


def fails_at(port, dataset, check: str) -> str:
    failure = first_failure(Proof(port, dataset), [check])
    assert failure is not None, f"{check} passed"
    return failure[1]


def with_optimizer(port, optimizer):
    return dataclasses.replace(port, jax=dataclasses.replace(port.jax, optimizer=optimizer))


def adamw(**changes):
    settings = dict(b1=torch_model.BETA1, b2=torch_model.BETA2, eps=1e-8, weight_decay=torch_model.WEIGHT_DECAY,
                    mask=jax_model.decay_mask)
    settings.update(changes)
    return lambda spe: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(jax_model.get_lr, **settings))


def attention(scale=None, causal=True, drop_output=False):
    """CausalSelfAttention.__call__ with one thing changed."""
    def call(self, x):
        B, T, C = x.shape
        q, k, v = jnp.split(self.c_attn(x), 3, axis=2)
        heads = lambda a: a.reshape(B, T, self.n_head, C // self.n_head).transpose(0, 2, 1, 3)
        q, k, v = heads(q), heads(k), heads(v)
        att = (q @ k.swapaxes(-2, -1)) * (scale(k.shape[-1]) if scale else 1.0 / math.sqrt(k.shape[-1]))
        if causal:
            att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -jnp.inf)
        att = jax.nn.softmax(att, axis=-1)
        y = self.attn_dropout(att @ v) if drop_output else self.attn_dropout(att) @ v
        return self.resid_dropout(self.c_proj(y.transpose(0, 2, 1, 3).reshape(B, T, C)))
    return call


# (the trap, what it edits, the check that must name it, what the message must say)
TRAPS = {
    "tanh GELU (jax.nn.gelu's default)": (
        lambda mp: mp.setattr(jax_model.MLP, "__call__", lambda self, x: self.dropout(self.c_proj(nnx.gelu(self.c_fc(x))))),
        "forward_eval", "transformer.h.0.mlp.c_proj"),
    "LayerNorm epsilon 1e-6 (Flax's default)": (
        lambda mp: mp.setattr(nnx, "LayerNorm", _layernorm(1e-6)), "forward_eval", "transformer.h.0.ln_1"),
    "no causal mask": (lambda mp: mp.setattr(jax_model.CausalSelfAttention, "__call__", attention(causal=False)),
                       "forward_eval", "transformer.h.0.attn"),
    "attention scaled by 1 / head size": (
        lambda mp: mp.setattr(jax_model.CausalSelfAttention, "__call__", attention(scale=lambda hs: 1.0 / hs)),
        "forward_eval", "transformer.h.0.attn"),
    "attention dropout on the output, not the weights": (
        lambda mp: mp.setattr(jax_model.CausalSelfAttention, "__call__", attention(drop_output=True)),
        "forward_train", "not the same tensor"),
    "truncated normal for torch's normal (timm's habit)": (  # KS alone passed it: p ~ 0.02
        lambda mp: mp.setattr(jax_model, "normal", nnx.initializers.truncated_normal), "init", "spread p = "),
    "weight decay on every tensor (biases, LayerNorms)": (
        lambda mp: None, ("optimizer", adamw(mask=None)), "transformer.h.0.ln_1.weight: update"),
    "betas left at Optax's defaults": (lambda mp: None, ("optimizer", adamw(b2=0.999)), "step 1"),
    "clipping per tensor": (lambda mp: None, ("optimizer", lambda spe: optax.chain(
        optax.clip(1.0), optax.adamw(jax_model.get_lr, b1=0.9, b2=0.95, weight_decay=0.1, mask=jax_model.decay_mask))),
        "step 1"),
    "warmup off by one (optax.linear_schedule from 0)": (
        lambda mp: mp.setattr(jax_model, "get_lr", _warmup_from_zero), "schedule", "step 1"),
    "the cosine's floor forgotten (decays to 0)": (
        lambda mp: mp.setattr(jax_model, "MIN_LR", 0.0), "schedule", "step 102"),
    # the text holds no -1 target: only the port's edge_batch (every 4th target -1) shows it [before it: passed]
    "ignore_index counted (a plain mean)": (
        lambda mp: mp.setattr(jax_model, "cross_entropy", _counting_cross_entropy), "loss_and_gradients",
        "on the port's edge_batch of batch 0, backward order: first split at the loss"),
}


def _counting_cross_entropy(logits, targets):
    """jax_model.cross_entropy with its mean over every position, the ignored (-1) ones too."""
    counted = targets != -1
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(counted, targets, 0)).mean()


def _layernorm(epsilon):
    real = nnx.LayerNorm

    def make(*args, **kwargs):
        return real(*args, **{**kwargs, "epsilon": epsilon})
    return make


def _warmup_from_zero(it):
    """optax.linear_schedule(0, lr, warmup) then train.py's cosine: the warmup starts at 0, not lr / 101."""
    warm = optax.linear_schedule(0.0, torch_model.LEARNING_RATE, torch_model.WARMUP_ITERS)(it)
    it = jnp.asarray(it, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    ratio = jnp.clip((it - torch_model.WARMUP_ITERS) / (torch_model.LR_DECAY_ITERS - torch_model.WARMUP_ITERS), 0, 1)
    cosine = torch_model.MIN_LR + 0.5 * (1 + jnp.cos(jnp.pi * ratio)) * (torch_model.LEARNING_RATE - torch_model.MIN_LR)
    return jnp.where(it < torch_model.WARMUP_ITERS, warm, cosine)


@pytest.mark.parametrize("trap", TRAPS)
def test_each_trap_is_named_where_it_is(text, monkeypatch, trap):
    edit, check, where = TRAPS[trap]
    port = PORT
    if isinstance(check, tuple):
        check, optimizer = check
        port = with_optimizer(port, optimizer)
    edit(monkeypatch)  # the port's model, schedule and loss read these names when called
    message = fails_at(port, text, check)
    assert where in message, message



class UntiedGPT(jax_model.GPT):
    """The tying lost: an lm_head of its own, as a port that copies torch's module list gets."""

    def __init__(self, config, rngs):
        super().__init__(config, rngs)
        self.lm_head = nnx.Linear(config.n_embd, config.vocab_size, use_bias=False,
                                  kernel_init=nnx.initializers.normal(0.02), rngs=rngs)

    def __call__(self, idx, targets=None):
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(jnp.arange(idx.shape[1])))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, jax_model.cross_entropy(logits, targets)


def test_weight_tying_is_checked_both_ways(text):
    """torch ties lm_head.weight to transformer.wte.weight: a port with its own lm_head is named at the
    weight map; and two torch tensors that are not tied may not share one JAX tensor. [Before: the
    untied port's map passed, and two names on one path passed unseen.]"""
    untied = dataclasses.replace(
        PORT, jax=dataclasses.replace(PORT.jax, model=lambda seed: UntiedGPT(torch_model.CONFIG, nnx.Rngs(seed))),
        weights={**PORT.weights, "lm_head.weight": ("params/lm_head/kernel", "linear")})
    assert "torch ties lm_head.weight and transformer.wte.weight" in fails_at(untied, text, "weight_map")
    shared = dataclasses.replace(PORT, weights={
        **PORT.weights, "transformer.h.1.ln_1.weight": PORT.weights["transformer.h.0.ln_1.weight"]})
    message = fails_at(shared, text, "weight_map")
    assert "transformer.h.0.ln_1.weight and transformer.h.1.ln_1.weight to one JAX tensor" in message, message


def test_the_dropout_inside_attention_is_proven_apart(text, monkeypatch):
    """torch drops the attention weights inside F.scaled_dot_product_attention, where no module is: the
    kit computes that call by its documented formula with its own masks (forward_train and the others
    compare on them), and proves what the injection hides apart: the rate torch's own SDPA drops at
    against the JAX layer's, and a JAX layer at another rate or unmapped is named. [Before: forward_train
    split at transformer.h.0.attn, torch's random SDPA dropout against the kit's masks.]"""
    name = f"transformer.h.0.attn.{SDPA_DROPOUT}"
    lines = check_dropout(Proof(PORT, text))
    assert any(line.startswith(f"{name} (train): torch drops 0.2") for line in lines), lines

    monkeypatch.setattr(jax_model.CausalSelfAttention, "__init__", _attention_dropout_at(0.1))
    message = fails_at(PORT, text, "dropout")
    assert "first split at transformer.h.0.attn.scaled_dot_product_attention.dropout" in message, message
    monkeypatch.undo()

    unmapped = dataclasses.replace(PORT, layers={})
    message = fails_at(unmapped, text, "dropout")
    assert "JAX's transformer.h.0.attn.attn_dropout" in message and "calls no dropout of that name" in message, message
    message = fails_at(unmapped, text, "forward_train")
    assert "JAX's dropout transformer.h.0.attn.attn_dropout" in message and "map them in Port.layers" in message, message


def _attention_dropout_at(rate):
    real = jax_model.CausalSelfAttention.__init__

    def init(self, config, rngs):
        real(self, config, rngs)
        self.attn_dropout = nnx.Dropout(rate, rngs=rngs)
    return init


def _join_schedules(steps_per_epoch):
    """train.py's get_lr as optax writes it: join_schedules of linear_schedule and cosine_decay_schedule,
    computed in float32 (the catalogue's control "nanoGPT's warmup and cosine as optax schedules")."""
    lr, warmup = torch_model.LEARNING_RATE, torch_model.WARMUP_ITERS
    return optax.join_schedules([optax.linear_schedule(lr / (warmup + 1), lr, warmup),
                                 optax.cosine_decay_schedule(lr, torch_model.LR_DECAY_ITERS - warmup,
                                                             torch_model.MIN_LR / lr)], [warmup])


def test_get_lr_as_optax_float32_schedules_trains_as_torch_does(text, monkeypatch):
    """A correct port of get_lr in optax's float32 schedules: XLA rounds its rate inside the jitted step
    one float32 ulp of the peak apart from where the kit evaluates it alone (step 10 here), and
    the float64 trajectory split there (5.79e-11 > 5.68e-11, 16x torch's own nudged divergence). Torch's
    nudged run now moves its rates by that ulp too, so the port passes, and a step at other rates fails."""
    monkeypatch.setattr(jax_model, "schedule", _join_schedules)  # the port's optimizer reads it when called
    port = dataclasses.replace(PORT, jax=dataclasses.replace(PORT.jax, schedule=_join_schedules))
    assert first_failure(Proof(port, text), ["schedule", "trajectory_float64"]) is None
    monkeypatch.setattr(jax_model, "schedule", lambda spe: lambda c: _join_schedules(spe)(c) * (1 + 1e-4))
    message = fails_at(port, text, "trajectory_float64")  # declared right, stepped 1e-4 off
    assert "first split at step 1:" in message, message


def test_the_ignored_targets_left_out_another_way_pass_the_edge_batch(text, monkeypatch):
    """The edge batch's equivalent rewrite: ignore_index=-1's mean over the counted targets written as
    jnp.mean(losses, where=counted) agrees with torch on the padded batch too (the catalogue's control)."""
    def masked_mean(logits, targets):
        counted = targets != -1
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(counted, targets, 0))
        return jnp.mean(losses, where=counted)

    monkeypatch.setattr(jax_model, "cross_entropy", masked_mean)
    assert first_failure(Proof(PORT, text), ["loss_and_gradients"]) is None


def slow_attention_gpt(seed, extra=None):
    """torch_model.model on a torch without F.scaled_dot_product_attention: model.py then builds its own
    attention by hand (a causal mask in a `bias` buffer, the weights' dropout in attn_dropout), as it does
    on torch < 2.0. extra(net): a change to the built model."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    del torch.nn.functional.scaled_dot_product_attention
    try:
        net = torch_model.model(seed)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
    if extra:
        extra(net)
    return net


def with_torch_model(port, model):
    return dataclasses.replace(port, torch=dataclasses.replace(port.torch, model=model))


def _counted_calls(net):
    """A buffer that training moves: how many train-mode calls the model has had."""
    def count(module, args):
        if module.training:
            module.calls.add_(1)

    net.register_buffer("calls", torch.zeros(()))
    net.register_forward_pre_hook(count)


def test_nanogpts_own_slow_attention_passes_the_port_written_for_sdpa(text, monkeypatch):
    """The same port, proven against model.py's slow path (the catalogue's control "nanoGPT's own
    attention by hand"): its `bias` buffer, the same for every seed and unchanged by training, is a
    constant that the JAX side computes (jnp.tril) and need not map; Port.layers' SDPA dropout name, which
    this forward never calls, gives way to the JAX attn_dropout's own name, which it does. A buffer that
    the seed draws or that training moves is still state that must be mapped, and a JAX dropout on the
    attention's output still splits. [Before: a false alarm at the weight map, "torch's
    transformer.h.0.attn.bias (1, 1, 32, 32) is not in the weight map", then at the dropout check.]"""
    slow = with_torch_model(PORT, slow_attention_gpt)
    proof = Proof(slow, text)
    assert first_failure(proof, ["weight_map", "dropout", "forward_train"]) is None
    held = check_weight_map(proof)[-1]
    assert held.startswith("torch's constants") and "transformer.h.1.attn.bias (1, 1, 32, 32)" in held, held
    assert any(line.startswith("transformer.h.0.attn.attn_dropout (train): torch drops")
               for line in check_dropout(proof))

    drawn = with_torch_model(PORT, lambda seed: slow_attention_gpt(seed, lambda net: net.register_buffer(
        "noise", torch.randn(3))))
    assert "torch's noise (3,) is not in the weight map" in fails_at(drawn, text, "weight_map")
    moved = with_torch_model(PORT, lambda seed: slow_attention_gpt(seed, _counted_calls))
    assert "torch's calls () is not in the weight map" in fails_at(moved, text, "weight_map")

    monkeypatch.setattr(jax_model.CausalSelfAttention, "__call__", attention(drop_output=True))
    message = fails_at(slow, text, "forward_train")
    assert "dropout at transformer.h.0.attn.attn_dropout" in message and "not the same tensor" in message, message
