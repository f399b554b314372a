"""The JAX port of pytorch/examples' word_language_model (model.py's RNNModel('LSTM', ...), at
77f55b91) in Flax NNX, and its main.py recipe in Optax.

Line by line against model.py and main.py:
- nn.Embedding(ntoken, ninp), uniform(-0.1, 0.1)  -> nnx.Embed, the same initializer
- nn.LSTM(ninp, nhid, nlayers, dropout)            -> LSTM below: torch's cell written out, one layer at a
  time over the sequence (jax.lax.scan over time, time first as torch's default batch_first=False):
    gates = W_ih x + b_ih + W_hh h + b_hh, split i, f, g, o (torch's order, its documented equations)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g),  h' = sigmoid(o) * tanh(c')
  each layer's W_ih, b_ih as one nnx.Linear (ih) and W_hh, b_hh as another (hh): torch keeps two biases,
  and so does the port (Flax's own LSTMCell keeps one, on the hidden side: under SGD a single bias moves
  half as far as torch's pair, which each take the whole gradient); every weight and bias
  uniform(-1/sqrt(nhid), 1/sqrt(nhid)), as nn.LSTM draws them; the dropout between layers (nn.LSTM's
  `dropout`, on every layer's output but the last) as rnn.dropout, an nnx.Dropout
- nn.Dropout(dropout) `drop`, on the embeddings and on the LSTM's output -> nnx.Dropout, called twice
- nn.Linear(nhid, ntoken), uniform(-0.1, 0.1) weight, zero bias -> nnx.Linear, the same initializers
- decoded.view(-1, ntoken), F.log_softmax(dim=1) -> reshape(-1, ntoken), jax.nn.log_softmax(axis=1)
- nn.NLLLoss() on get_batch's targets (time first, flattened) -> the mean of -log_probs at the targets
- clip_grad_norm_(0.25), then p.data.add_(p.grad, alpha=-lr) -> optax.clip_by_global_norm(0.25), then
  optax.sgd(20) (torch divides by the norm + 1e-6, optax by the norm: the kit allows that 1e-6)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from examples.nanogpt.data import VOCAB_SIZE
from examples.word_language_model.torch_model import CLIP, DROPOUT, EMSIZE, LR, NHID, NLAYERS


def uniform(bound: float):
    """U(-bound, bound), as torch's nn.init.uniform_(-bound, bound) (nnx.initializers.uniform is [0, scale))."""
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class LSTMLayer(nnx.Module):
    """One layer of torch's nn.LSTM: weight_ih_l{k}, bias_ih_l{k} as ih; weight_hh_l{k}, bias_hh_l{k} as hh."""

    def __init__(self, in_features: int, hidden: int, rngs: nnx.Rngs):
        init = uniform(1 / math.sqrt(hidden))
        self.ih = nnx.Linear(in_features, 4 * hidden, kernel_init=init, bias_init=init, rngs=rngs)
        self.hh = nnx.Linear(hidden, 4 * hidden, kernel_init=init, bias_init=init, rngs=rngs)

    def __call__(self, x, carry):
        """x (time, batch, in), carry (h, c) each (batch, hidden) -> ((h, c) at the end, the outputs (time,
        batch, hidden))."""
        inputs = self.ih(x)  # every time step's input side at once

        def cell(carry, x_t):
            h, c = carry
            i, f, g, o = jnp.split(x_t + self.hh(h), 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        return jax.lax.scan(cell, carry, inputs)


class LSTM(nnx.Module):
    """torch's nn.LSTM(input_size, hidden_size, num_layers, dropout): (output, (h_n, c_n))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float, rngs: nnx.Rngs):
        self.layers = nnx.List([LSTMLayer(input_size if k == 0 else hidden_size, hidden_size, rngs)
                                for k in range(num_layers)])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x, hidden):
        h0, c0 = hidden
        hs, cs = [], []
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            (h, c), x = layer(x, (h0[k], c0[k]))
            hs.append(h)
            cs.append(c)
        return x, (jnp.stack(hs), jnp.stack(cs))


class RNNModel(nnx.Module):
    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float, rngs: nnx.Rngs):
        self.ntoken = ntoken
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.encoder = nnx.Embed(ntoken, ninp, embedding_init=uniform(0.1), rngs=rngs)
        self.rnn = LSTM(ninp, nhid, nlayers, dropout, rngs)
        self.decoder = nnx.Linear(nhid, ntoken, kernel_init=uniform(0.1), bias_init=nnx.initializers.zeros,
                                  rngs=rngs)

    def __call__(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).reshape(-1, self.ntoken)
        return jax.nn.log_softmax(decoded, axis=1), hidden


def model(seed: int) -> RNNModel:
    return RNNModel(VOCAB_SIZE, EMSIZE, NHID, NLAYERS, DROPOUT, nnx.Rngs(seed))


def inputs(raw):
    """As torch_model.inputs: (data (bptt, batch) token ids, time first; (h, c), each (nlayers, batch, nhid):
    zeros, or the state the batch carries)."""
    windows, state = raw if isinstance(raw, tuple) else (raw, None)
    if state is None:
        zeros = jnp.zeros((NLAYERS, windows.shape[0], NHID), jnp.float32)
        state = (zeros, zeros)
    return windows.T.astype("int32"), state


def loss(output, labels):
    log_probs, _ = output
    targets = labels.T.reshape(-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, targets[:, None], axis=1))


def scores(output):
    log_probs, (h, _) = output
    return log_probs.reshape(-1, h.shape[1], log_probs.shape[-1]).swapaxes(0, 1)


def optimizer(steps_per_epoch: int):
    return optax.chain(optax.clip_by_global_norm(CLIP), optax.sgd(LR))
