"""nanoGPT as published: model.py is karpathy/nanoGPT's model.py at commit
3adf61e154c3fe3fca428ad6bc3818b27a3b8291, byte for byte (MIT, LICENSE-nanoGPT). This file is the rest
of its train.py, at a small size: the configuration, the seeded build, model.configure_optimizers
(AdamW, decay on the matrices and embeddings only, betas 0.9/0.95), clip_grad_norm_ at 1.0, and
get_lr (a linear warmup, then a cosine decay to a floor) as a per-iteration LambdaLR.

The configuration is config/train_shakespeare_char.py's "baby GPT" made smaller still, so the proof's
float64 passes fit a 2-core CI: 2 layers, 2 heads, 32 wide, a block of 32 characters; dropout 0.2 and
the GPT-2 biases (GPTConfig's default bias=True) kept on."""

from __future__ import annotations

import math

import torch

from examples.nanogpt.data import VOCAB_SIZE
from examples.nanogpt.model import GPT, GPTConfig

CONFIG = GPTConfig(block_size=32, vocab_size=VOCAB_SIZE, n_layer=2, n_head=2, n_embd=32, dropout=0.2, bias=True)
# train.py's settings (train_shakespeare_char.py's learning rate, floor and warmup; train.py's betas,
# decay and clipping); the run is 2,000 iterations.
LEARNING_RATE, MIN_LR, WARMUP_ITERS, LR_DECAY_ITERS, MAX_ITERS = 1e-3, 1e-4, 100, 2000, 2000
WEIGHT_DECAY, BETA1, BETA2, GRAD_CLIP = 1e-1, 0.9, 0.95, 1.0
BATCH_SIZE, EVAL_INTERVAL = 64, 250


def model(seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(CONFIG)


def inputs(batch):
    """model(idx, targets): both as int64, as train.py's get_batch makes them."""
    idx, targets = batch
    return idx.astype("int64"), targets.astype("int64")


def loss(output, targets):
    """train.py: `logits, loss = model(X, Y)`: the model's own cross-entropy (ignore_index=-1)."""
    _, model_loss = output
    return model_loss


def optimizer(net: GPT):
    return net.configure_optimizers(WEIGHT_DECAY, LEARNING_RATE, (BETA1, BETA2), "cpu")


def get_lr(it: int) -> float:
    """train.py's get_lr, verbatim."""
    # 1) linear warmup for warmup_iters steps
    if it < WARMUP_ITERS:
        return LEARNING_RATE * (it + 1) / (WARMUP_ITERS + 1)
    # 2) if it > lr_decay_iters, return min learning rate
    if it > LR_DECAY_ITERS:
        return MIN_LR
    # 3) in between, use cosine decay down to min learning rate
    decay_ratio = (it - WARMUP_ITERS) / (LR_DECAY_ITERS - WARMUP_ITERS)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
    return MIN_LR + coeff * (LEARNING_RATE - MIN_LR)


def scheduler(opt):
    """train.py sets every group's lr to get_lr(iter_num) before each step: a LambdaLR of the same
    factor, stepped after every iteration (its rate at construction is get_lr(0))."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda it: get_lr(it) / LEARNING_RATE)


def clip(net: GPT) -> None:
    """train.py, between backward() and step()."""
    torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
