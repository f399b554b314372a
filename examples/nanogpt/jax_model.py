"""The JAX port of nanoGPT's GPT (nanogpt/model.py, karpathy/nanoGPT at 3adf61e1) in Flax NNX, and its
train.py recipe in Optax.

Line by line against model.py and train.py:
- LayerNorm(ndim, bias), eps 1e-5     -> nnx.LayerNorm(epsilon=1e-5): Flax's default is 1e-6
- c_attn, one Linear for q, k, v       -> one nnx.Linear, split in three on the last axis, q then k then v
- scaled_dot_product_attention(is_causal=True, dropout_p) -> by hand, as model.py's own slow path:
  (q @ k^T) / sqrt(head size), -inf above the diagonal, softmax over the keys, then attn_dropout on the
  attention weights (torch drops the weights inside SDPA, not its output)
- nn.GELU()                            -> nnx.gelu(approximate=False): torch's default is the exact erf
                                          form, JAX's the tanh approximation
- _init_weights: normal(0.02) for every Linear and Embedding, zero biases; c_proj.weight normal
  (0.02 / sqrt(2 n_layer))             -> the same initializers (nnx.initializers.normal: a plain normal)
- transformer.wte.weight = lm_head.weight (tied) -> no lm_head: the logits are wte.attend(x), x @ E^T,
                                          one tensor, as in torch
- F.cross_entropy(ignore_index=-1)     -> the mean over the targets that are not -1
- configure_optimizers: AdamW, weight decay on tensors of 2 or more dimensions -> optax.adamw(mask=...)
  (decoupled in both: lr * wd * p)
- clip_grad_norm_(1.0)                 -> optax.clip_by_global_norm(1.0), ahead of adamw (torch divides by the
                                          norm + 1e-6, optax by the norm: the kit allows that 1e-6)
- get_lr(it), set before each iteration -> the same function of optax's step count, in jnp
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from examples.nanogpt.torch_model import (BETA1, BETA2, CONFIG, GRAD_CLIP, LEARNING_RATE, LR_DECAY_ITERS, MIN_LR,
                                          WARMUP_ITERS, WEIGHT_DECAY, inputs)

normal = nnx.initializers.normal


class CausalSelfAttention(nnx.Module):
    def __init__(self, config, rngs: nnx.Rngs):
        proj_std = 0.02 / math.sqrt(2 * config.n_layer)
        self.c_attn = nnx.Linear(config.n_embd, 3 * config.n_embd, use_bias=config.bias, kernel_init=normal(0.02),
                                 rngs=rngs)
        self.c_proj = nnx.Linear(config.n_embd, config.n_embd, use_bias=config.bias, kernel_init=normal(proj_std),
                                 rngs=rngs)
        self.attn_dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.resid_dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.n_head, self.n_embd = config.n_head, config.n_embd

    def __call__(self, x):
        B, T, C = x.shape
        q, k, v = jnp.split(self.c_attn(x), 3, axis=2)
        heads = lambda a: a.reshape(B, T, self.n_head, C // self.n_head).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        q, k, v = heads(q), heads(k), heads(v)
        att = (q @ k.swapaxes(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -jnp.inf)
        att = self.attn_dropout(jax.nn.softmax(att, axis=-1))
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nnx.Module):
    def __init__(self, config, rngs: nnx.Rngs):
        proj_std = 0.02 / math.sqrt(2 * config.n_layer)
        self.c_fc = nnx.Linear(config.n_embd, 4 * config.n_embd, use_bias=config.bias, kernel_init=normal(0.02),
                               rngs=rngs)
        self.c_proj = nnx.Linear(4 * config.n_embd, config.n_embd, use_bias=config.bias, kernel_init=normal(proj_std),
                                 rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)

    def __call__(self, x):
        return self.dropout(self.c_proj(nnx.gelu(self.c_fc(x), approximate=False)))


class Block(nnx.Module):
    def __init__(self, config, rngs: nnx.Rngs):
        self.ln_1 = nnx.LayerNorm(config.n_embd, epsilon=1e-5, use_bias=config.bias, rngs=rngs)
        self.attn = CausalSelfAttention(config, rngs)
        self.ln_2 = nnx.LayerNorm(config.n_embd, epsilon=1e-5, use_bias=config.bias, rngs=rngs)
        self.mlp = MLP(config, rngs)

    def __call__(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nnx.Module):
    def __init__(self, config, rngs: nnx.Rngs):
        self.transformer = nnx.Dict(
            wte=nnx.Embed(config.vocab_size, config.n_embd, embedding_init=normal(0.02), rngs=rngs),
            wpe=nnx.Embed(config.block_size, config.n_embd, embedding_init=normal(0.02), rngs=rngs),
            drop=nnx.Dropout(config.dropout, rngs=rngs),
            h=nnx.List([Block(config, rngs) for _ in range(config.n_layer)]),
            ln_f=nnx.LayerNorm(config.n_embd, epsilon=1e-5, use_bias=config.bias, rngs=rngs),
        )

    def __call__(self, idx, targets=None):
        t = idx.shape[1]
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(jnp.arange(t))
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is None:  # as model.py: at inference, the last position's logits only
            return self.transformer.wte.attend(x[:, -1:, :]), None
        logits = self.transformer.wte.attend(x)  # the tied lm_head
        return logits, cross_entropy(logits, targets)


def cross_entropy(logits, targets):
    """F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)."""
    counted = targets != -1
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(counted, targets, 0))
    return jnp.sum(jnp.where(counted, losses, 0.0)) / jnp.sum(counted)


def model(seed: int) -> GPT:
    return GPT(CONFIG, rngs=nnx.Rngs(seed))


def loss(output, targets):
    _, model_loss = output
    return model_loss


def get_lr(it):
    """train.py's get_lr(it) of optax's step count (0 at the first update, as iter_num)."""
    it = jnp.asarray(it, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    warmup = LEARNING_RATE * (it + 1) / (WARMUP_ITERS + 1)
    decay_ratio = jnp.clip((it - WARMUP_ITERS) / (LR_DECAY_ITERS - WARMUP_ITERS), 0.0, 1.0)
    cosine = MIN_LR + 0.5 * (1.0 + jnp.cos(jnp.pi * decay_ratio)) * (LEARNING_RATE - MIN_LR)
    return jnp.where(it < WARMUP_ITERS, warmup, jnp.where(it > LR_DECAY_ITERS, MIN_LR, cosine))


def schedule(steps_per_epoch: int):
    return get_lr  # counted in iterations, as train.py counts them: no epochs


def decay_mask(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def optimizer(steps_per_epoch: int) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP),
                       optax.adamw(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8,
                                   weight_decay=WEIGHT_DECAY, mask=decay_mask))
