"""Two layers written for speed on XLA:CPU, with torch's exact gradient semantics.

Measured on a 2-core CPU at batch 64 (see README, Performance): XLA's max-pool gradient
(select_and_scatter) cost 22 ms of a 48 ms step, and its conv weight gradient 7.9 ms where
k*k shifted matmuls take 3.7 ms. The forward passes are the plain XLA ops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


@jax.custom_vjp
def conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'VALID' stride-1 convolution, x (N, H, W, C) and kernel (k, k, C, F) -> (N, H-k+1, W-k+1, F)."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMS)


def _conv2d_fwd(x, kernel):
    return conv2d(x, kernel), (x, kernel)


def _conv2d_bwd(residuals, g):
    x, kernel = residuals
    k = kernel.shape[0]
    n, ho, wo, f = g.shape
    c = x.shape[-1]
    # Input gradient: XLA's own transposed convolution is fast enough.
    _, input_vjp = jax.vjp(lambda x_: lax.conv_general_dilated(x_, kernel, (1, 1), "VALID", dimension_numbers=_DIMS), x)
    (dx,) = input_vjp(g)
    # Weight gradient: one (C, N*Ho*Wo) @ (N*Ho*Wo, F) matmul per kernel tap.
    g2 = g.reshape(-1, f)
    if c == 1:  # one input channel: a single im2col matmul beats k*k skinny ones
        patches = jnp.concatenate([x[:, i : i + ho, j : j + wo, :] for i in range(k) for j in range(k)], axis=-1)
        dk = (patches.reshape(-1, k * k).T @ g2).reshape(k, k, 1, f)
    else:
        taps = [x[:, i : i + ho, j : j + wo, :].reshape(-1, c).T @ g2 for i in range(k) for j in range(k)]
        dk = jnp.stack(taps).reshape(k, k, c, f)
    return dx, dk


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _windows(x):
    """The four elements of each 2x2 window, in torch's scan order (row-major), odd edges dropped."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    x6 = x[:, : 2 * h2, : 2 * w2, :].reshape(n, h2, 2, w2, 2, c)
    return x6[:, :, 0, :, 0], x6[:, :, 0, :, 1], x6[:, :, 1, :, 0], x6[:, :, 1, :, 1]


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pool, stride 2, floor (as torch.nn.MaxPool2d(2)): (N, H, W, C) -> (N, H//2, W//2, C)."""
    a, b, c, d = _windows(x)
    return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _max_pool_fwd(x):
    return max_pool_2x2(x), x


def _max_pool_bwd(x, g):
    # torch routes the whole gradient to the *first* maximum in scan order; XLA's reduce-max
    # gradient would split ties, which happen often (flat background gives equal activations).
    a, b, c, d = _windows(x)
    pick_a = (a >= b) & (a >= c) & (a >= d)
    pick_b = ~pick_a & (b >= c) & (b >= d)
    pick_c = ~pick_a & ~pick_b & (c >= d)
    pick_d = ~(pick_a | pick_b | pick_c)
    zero = jnp.zeros_like(g)
    ga, gb, gc, gd = (jnp.where(p, g, zero) for p in (pick_a, pick_b, pick_c, pick_d))
    n, h2, w2, ch = g.shape
    top = jnp.stack([ga, gb], axis=3)  # (N, H2, W2, 2, C)
    bottom = jnp.stack([gc, gd], axis=3)
    dx = jnp.stack([top, bottom], axis=2).reshape(n, 2 * h2, 2 * w2, ch)
    h, w = x.shape[1], x.shape[2]
    dx = jnp.pad(dx, ((0, 0), (0, h - 2 * h2), (0, w - 2 * w2), (0, 0)))
    return (dx,)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)
