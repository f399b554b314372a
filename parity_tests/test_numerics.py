"""(3) Forward and (4) gradients: the same weights give the same logits, loss and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data import to_float
from flax_impl.convert import flax_to_torch
from flax_impl.model import Convnet as FlaxConvnet
from flax_impl.model import layer_outputs
from flax_impl.train import cross_entropy
from parity_tests.helpers import torch_model_and_flax_params

pytestmark = pytest.mark.realdata

FORWARD_ATOL = 1e-5  # the bound on logits
GRAD_RTOL = 1e-5  # max |diff| / max |torch grad|, per tensor


def to_nchw(a):
    a = np.asarray(a)
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


@pytest.mark.parametrize("k", [3, 5])
def test_same_logits_and_predictions_on_real_test_images(real_data, k):
    torch_model, flax_vars = torch_model_and_flax_params(k, seed=1)
    x = to_float(real_data.test_images[:1000])
    with torch.no_grad():
        t = torch_model.layer_outputs(torch.from_numpy(x)[:, None])
    f = layer_outputs(FlaxConvnet(k), flax_vars, jnp.asarray(x[..., None]))
    # Layer by layer, so a drift names the layer that causes it (e.g. the flatten order).
    for name in t:
        diff = np.abs(t[name].numpy() - to_nchw(f[name])).max()
        assert diff <= FORWARD_ATOL, f"{name}: max |torch - flax| = {diff:.3g}"
    np.testing.assert_array_equal(t["dense2"].numpy().argmax(1), np.asarray(f["dense2"]).argmax(1))


def test_same_loss_and_gradients_on_a_real_batch(real_batch):
    images, labels = real_batch
    torch_model, flax_vars = torch_model_and_flax_params(3, seed=2)
    loss_t = F.cross_entropy(torch_model(torch.from_numpy(images)[:, None]), torch.from_numpy(labels))
    loss_t.backward()
    grads_t = {n: p.grad.numpy() for n, p in torch_model.named_parameters()}

    model = FlaxConvnet(3)

    def loss_fn(params):
        logits = model.apply({"params": params}, jnp.asarray(images[..., None]))
        return cross_entropy(logits, jnp.asarray(labels)).mean()

    loss_f, grads = jax.value_and_grad(loss_fn)(flax_vars["params"])
    assert abs(float(loss_f) - loss_t.item()) <= 1e-6 * abs(loss_t.item())
    grads_f = flax_to_torch({"params": jax.device_get(grads)})  # into torch's layout and names
    assert set(grads_f) == set(grads_t)
    for name, gt in grads_t.items():
        rel = np.abs(grads_f[name] - gt).max() / np.abs(gt).max()
        assert rel <= GRAD_RTOL, f"{name}: relative gradient difference {rel:.3g}"


def test_max_pool_routes_gradient_like_torch_on_ties():
    """Exact ties are common (flat background gives equal activations): torch sends the whole
    gradient to the first maximum of each window, XLA's reduce-max would split it."""
    from flax_impl.ops import max_pool_2x2

    rng = np.random.default_rng(0)
    x = np.round(rng.random((4, 11, 11, 3)) * 2).astype(np.float32)  # values in {0, 1, 2}: many ties
    g = rng.random((4, 5, 5, 3)).astype(np.float32)
    y, vjp = jax.vjp(max_pool_2x2, jnp.asarray(x))
    (dx,) = vjp(jnp.asarray(g))
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    ty = F.max_pool2d(tx, 2)
    ty.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(to_nchw(y), ty.detach().numpy())
    np.testing.assert_array_equal(to_nchw(dx), tx.grad.numpy())


@pytest.mark.parametrize("channels", [1, 32])
def test_conv_gradients_match_torch(channels):
    from flax_impl.ops import conv2d

    rng = np.random.default_rng(channels)
    x = rng.standard_normal((8, 13, 13, channels)).astype(np.float32)
    w = rng.standard_normal((3, 3, channels, 16)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    g = rng.standard_normal((8, 11, 11, 16)).astype(np.float32)
    y, vjp = jax.vjp(conv2d, jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
    dx, dw, db = vjp(jnp.asarray(g))
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ty = F.conv2d(tx, tw, tb)
    ty.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    for ours, theirs in ((to_nchw(y), ty.detach().numpy()), (to_nchw(dx), tx.grad.numpy()),
                         (np.asarray(dw).transpose(3, 2, 0, 1), tw.grad.numpy()), (np.asarray(db), tb.grad.numpy())):
        assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
