"""The custom-VJP variants of both Flax models (flax_impl/model.py, Linen; flax_impl/nnx_model.py,
NNX): the same models, parameter trees and names, with their convolutions and max pools written as
custom-VJP operations for speed (measured on XLA:CPU and on one H200 GPU). The operations are plain functions (conv2d,
max_pool_2x2); each API's tuned variant calls them, so nothing is written twice.

Nothing here is needed to learn the port (read model.py for that). The variant is the default on
the CPU and the GPU because it measured faster on both (`make bench`, docs/performance.md: 1.53x the
idiomatic model's step on an H200); its custom VJPs
support reverse-mode autodiff only, so jax.jvp / jax.jacfwd / jax.hessian need the idiomatic model
(`--variant idiomatic`). Its gradients equal torch's, ties in the max pools included (parity_tests).

Measured on a 2-core CPU at batch 64 (see README, Performance), with XLA's convolutions on its
Eigen path (train.COMPILER_OPTIONS):
- conv1 (one input channel) as one im2col matmul with the bias as a tenth column, its patches
  kept for the weight gradient: 0.5 ms forward + 0.3 ms weight and bias gradient, where XLA's
  convolution took 1.6 ms forward and its weight gradient plus a bias reduction 1.2 ms.
- bias gradients as a ones-vector matmul: 0.13 ms where XLA's reduction took 0.7 ms.
- max pool: the gradient routed by the first maximum's index (int8) saved in the forward pass,
  0.4 ms where recomparing the window took 1.0 ms and XLA's select_and_scatter 22 ms.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx
from jax import lax

from common.arch import CONV1_CHANNELS, CONV2_CHANNELS, HIDDEN, NUM_CLASSES, flat_features, spatial_sizes
from flax_impl.inits import initializers
from flax_impl import nnx_model
from flax_impl.model import Convnet

_DIMS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMS)


# The backends whose seed sweeps (--sweep vmap) run these convolutions as batched matmuls, by measurement.
# jax.vmap of a convolution whose kernel is batched too becomes one grouped convolution (feature_group_count
# = seeds), which XLA:CPU runs off its fast path; as im2col patches times the kernel, the seeds are the
# batch of one batched matmul. 2-core Intel Xeon (`python -m benchmarks.seeds --formulations`, 5 rounds):
# conv2 forward and both gradients, 8 seeds, 46.1 ms per seed grouped against 14.4 ms as matmuls; the whole
# vmapped step 21.8 against 14.3 ms per model-step (docs/sweeps.md). On a GPU it is unmeasured (benchmarks/gpu_check.sh's
# seeds stage times both), so it keeps JAX's own rule there: a backend not named here does.
SEEDS_AS_MATMULS = {"cpu": True}


def lowering_platforms(platform: str) -> tuple[str, ...]:
    """The names lax.platform_dependent (and so SEEDS_AS_MATMULS) knows a device platform by: jax's "gpu"
    lowers as "cuda" or "rocm"."""
    return {"gpu": ("cuda", "rocm")}.get(platform, (platform,))


def seeds_as_matmuls(platform: str) -> bool:
    """Whether a vmapped seed sweep traced for this device platform takes the matmul form."""
    return any(SEEDS_AS_MATMULS.get(name, False) for name in lowering_platforms(platform))


@contextlib.contextmanager
def seeds_formulation(platform: str, matmuls: bool):
    """Within: a vmapped seed sweep traced for `platform` takes the matmul form (True) or JAX's grouped
    convolutions (False), whatever SEEDS_AS_MATMULS says; restored after. The form is fixed when the step
    is traced: trace (lower) inside, on an empty trace cache (benchmarks.seeds times both forms so)."""
    saved = dict(SEEDS_AS_MATMULS)
    SEEDS_AS_MATMULS.update({name: matmuls for name in lowering_platforms(platform)})
    try:
        yield
    finally:
        SEEDS_AS_MATMULS.clear()
        SEEDS_AS_MATMULS.update(saved)


def _as_matmuls_when_seeds_vmapped(matmuls):
    """The decorated convolution as written; under jax.vmap over both operands (each seed its own data and
    its own kernel), on a backend of SEEDS_AS_MATMULS, `matmuls` of the stacked operands instead. A vmap
    over one operand keeps JAX's own rule: the seeds go into the batch or the features of one ordinary
    convolution."""
    def decorate(plain):
        conv = jax.custom_batching.custom_vmap(plain)

        @conv.def_vmap
        def rule(axis_size, in_batched, a, b):
            if axis_size == 1:  # one seed: its own convolution
                return plain(*(x[0] if batched else x for x, batched in zip((a, b), in_batched)))[None], True
            own = jax.vmap(plain, in_axes=tuple(0 if batched else None for batched in in_batched))
            branches = {platform: matmuls for platform, on in SEEDS_AS_MATMULS.items() if on}
            if not all(in_batched) or not branches:
                return own(a, b), True
            return lax.platform_dependent(a, b, default=own, **branches), True

        return conv
    return decorate


def _patches(x, kh, kw):
    """(..., H, W, C) -> (..., Ho, Wo, kh*kw*C): each output pixel's taps, row-major, then channels (HWIO's order)."""
    ho, wo = x.shape[-3] - kh + 1, x.shape[-2] - kw + 1
    taps = jnp.stack([x[..., i : i + ho, j : j + wo, :] for i in range(kh) for j in range(kw)], axis=-2)
    return taps.reshape(*taps.shape[:-2], -1)


def _seeds_conv(xs, kernels):  # (S, N, H, W, C), (S, k, k, C, F) -> (S, N, Ho, Wo, F)
    kh, kw, _, f = kernels.shape[1:]
    return jnp.einsum("snhwp,spf->snhwf", _patches(xs, kh, kw), kernels.reshape(len(kernels), -1, f))


def _seeds_input_grad(gs, kernels):  # (S, N, Ho, Wo, F), (S, k, k, C, F) -> (S, N, H, W, C)
    """Each tap's share of the gradient (g times the kernel's transpose), added back where the tap read."""
    s, kh, kw, c, f = kernels.shape
    taps = jnp.einsum("snhwf,spf->snhwp", gs, kernels.reshape(s, -1, f)).reshape(*gs.shape[:-1], kh * kw, c)
    pads = lambda i, j: ((0, 0), (0, 0), (i, kh - 1 - i), (j, kw - 1 - j), (0, 0))
    return sum(jnp.pad(taps[..., i * kw + j, :], pads(i, j)) for i in range(kh) for j in range(kw))


def _seeds_kernel_grad(xs, gs):  # (S, N, H, W, C), (S, N, Ho, Wo, F) -> (S, k, k, C, F)
    (h, w, c), (ho, wo, f) = xs.shape[2:], gs.shape[2:]
    kh, kw = h - ho + 1, w - wo + 1
    return jnp.einsum("snhwp,snhwf->spf", _patches(xs, kh, kw), gs).reshape(len(xs), kh, kw, c, f)


@_as_matmuls_when_seeds_vmapped(_seeds_conv)
def _conv(x, kernel):
    """The forward convolution of conv2 (and of any conv2d with more than one input channel)."""
    return _xla_conv(x, kernel)


@_as_matmuls_when_seeds_vmapped(_seeds_input_grad)
def _conv_input_grad(g, kernel):
    """dL/dx of a 'VALID' convolution: g padded by k-1 on every side, convolved with the flipped kernel."""
    k = kernel.shape[0]
    g = jnp.pad(g, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
    return _xla_conv(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))  # kernel (k, k, F, C)


@_as_matmuls_when_seeds_vmapped(_seeds_kernel_grad)
def _conv_kernel_grad(x, g):
    """dL/dkernel of a 'VALID' convolution: a convolution over the batch, the batch as the features.

    XLA derives the same from jax.vjp, but inside a lax.scan its layouts left the op off the Eigen
    path (94 ms instead of 2.3 ms per step); written out, it is an ordinary NHWC/HWIO convolution.
    """
    dk = _xla_conv(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3))  # (C, k, k, N) * (Ho, Wo, N, F) -> (C, k, k, F)
    return dk.transpose(1, 2, 0, 3)


def _single_channel_patches(x, k):
    """(N, H, W, 1) -> (N*Ho*Wo, k*k + 1): the k*k taps of each output pixel, then a 1 for the bias."""
    n, h, w, _ = x.shape
    ho, wo = h - k + 1, w - k + 1
    taps = [x[:, i : i + ho, j : j + wo, 0] for i in range(k) for j in range(k)]
    return jnp.stack([*taps, jnp.ones((n, ho, wo), x.dtype)], axis=-1).reshape(-1, k * k + 1)


def _conv2d_fwd(x, kernel, bias):
    k, f = kernel.shape[0], kernel.shape[-1]
    n, h, w, c = x.shape
    if c == 1:
        patches = _single_channel_patches(x, k)
        weights = jnp.concatenate([kernel.reshape(k * k, f), bias[None]])  # (k*k + 1, F)
        y = (patches @ weights).reshape(n, h - k + 1, w - k + 1, f)
        return y, (x, kernel, patches)
    return _conv(x, kernel) + bias, (x, kernel, None)


@jax.custom_vjp
def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """'VALID' stride-1 convolution plus bias: x (N, H, W, C), kernel (k, k, C, F), bias (F,) -> (N, H-k+1, W-k+1, F)."""
    return _conv2d_fwd(x, kernel, bias)[0]


def _sum_rows(g2):
    """Column sums of (M, F) as a matmul with a row of ones."""
    return (jnp.ones((1, g2.shape[0]), g2.dtype) @ g2)[0]


def _conv2d_bwd(residuals, g):
    x, kernel, patches = residuals
    f = kernel.shape[-1]
    g2 = g.reshape(-1, f)  # (N*Ho*Wo, F)
    dx = _conv_input_grad(g, kernel)  # dropped by XLA when x needs no gradient (conv1)
    if patches is not None:
        grads = patches.T @ g2  # (k*k + 1, F): weight rows, then the bias row
        return dx, grads[:-1].reshape(kernel.shape), grads[-1]
    return dx, _conv_kernel_grad(x, g), _sum_rows(g2)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _windows(x):
    """The four elements of each 2x2 window, in torch's scan order (row-major), odd edges dropped."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    x6 = x[:, : 2 * h2, : 2 * w2, :].reshape(n, h2, 2, w2, 2, c)
    return x6[:, :, 0, :, 0], x6[:, :, 0, :, 1], x6[:, :, 1, :, 0], x6[:, :, 1, :, 1]


def _max_pool_fwd(x):
    a, b, c, d = _windows(x)
    y = jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))
    # Route the whole gradient to the *first* maximum in scan order, as torch (and nn.max_pool) do;
    # saving its index costs less in the backward pass than comparing the window again.
    first = jnp.where(a == y, 0, jnp.where(b == y, 1, jnp.where(c == y, 2, 3))).astype(jnp.int8)
    return y, (first, x.shape)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pool, stride 2, floor (as torch.nn.MaxPool2d(2)): (N, H, W, C) -> (N, H//2, W//2, C)."""
    return _max_pool_fwd(x)[0]


def _max_pool_bwd(residuals, g):
    first, shape = residuals
    n, h2, w2, ch = g.shape
    position = jnp.arange(4, dtype=jnp.int8).reshape(1, 1, 2, 1, 2, 1)  # window row, column
    dx = jnp.where(first[:, :, None, :, None, :] == position, g[:, :, None, :, None, :], 0.0)
    dx = dx.reshape(n, 2 * h2, 2 * w2, ch)
    return (jnp.pad(dx, ((0, 0), (0, shape[1] - 2 * h2), (0, shape[2] - 2 * w2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class Conv(nn.Module):
    """nn.Conv(features, (k, k), padding="VALID") with the same parameters ('kernel' HWIO, 'bias'), on conv2d."""

    features: int
    kernel_size: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x):  # (N, H, W, C)
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return conv2d(x, kernel, bias)


class CustomVjpConvnet(Convnet):
    """Convnet with conv2d and max_pool_2x2 in place of nn.Conv and nn.max_pool; the same init draws."""

    def setup(self):
        k = self.conv2d_kernel_size
        spatial_sizes(k)
        init = self.init_scheme
        self.conv1 = Conv(CONV1_CHANNELS, k, **initializers(init, 1 * k * k))
        self.conv2 = Conv(CONV2_CHANNELS, k, **initializers(init, CONV1_CHANNELS * k * k))
        self.dense1 = nn.Dense(HIDDEN, **initializers(init, flat_features(k)))
        self.dense2 = nn.Dense(NUM_CLASSES, **initializers(init, HIDDEN))

    def pool(self, x):
        return max_pool_2x2(x)


class TunedConv(nnx.Conv):
    """nnx.Conv ("VALID", stride 1): its own parameters ('kernel' HWIO, 'bias') and draws, applied through conv2d."""

    def __call__(self, x):  # (N, H, W, C)
        return conv2d(x, self.kernel[...], self.bias[...])


class NnxCustomVjpConvnet(nnx_model.Convnet):
    """The NNX Convnet with conv2d and max_pool_2x2 in place of nnx.Conv and nnx.max_pool; its layers are
    built in the same order from the same rngs, so the init draws are the same numbers."""

    def __init__(self, conv2d_kernel_size: int = 3, init: str = "torch", *, rngs: nnx.Rngs):
        k = conv2d_kernel_size
        spatial_sizes(k)
        self.conv1 = TunedConv(1, CONV1_CHANNELS, (k, k), padding="VALID", rngs=rngs, **initializers(init, 1 * k * k))
        self.conv2 = TunedConv(CONV1_CHANNELS, CONV2_CHANNELS, (k, k), padding="VALID", rngs=rngs,
                               **initializers(init, CONV1_CHANNELS * k * k))
        self.dense1 = nnx.Linear(flat_features(k), HIDDEN, rngs=rngs, **initializers(init, flat_features(k)))
        self.dense2 = nnx.Linear(HIDDEN, NUM_CLASSES, rngs=rngs, **initializers(init, HIDDEN))

    def pool(self, x):
        return max_pool_2x2(x)
