"""`python -m examples.bn_net.measure_traps`: what each BatchNorm port does to the model, measured.

From the same weights, 20 train-mode passes (forward only, float32) over the same real batches, then
eval mode on 2,000 test images: how far each port's running statistics are from torch's, and on how
many images its predictions agree with torch's. Then the trap for the gradient check: the biases just
before a BatchNorm have a true gradient of zero, so each side's float32 gradient is float noise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from data import load_fashion_mnist
from examples.bn_net import jax_model
from examples.bn_net.test_proof import PORT
from parity.checks import Proof
from parity.weights import jax_to_torch

PORTS = {
    "torch semantics (jax_model.BatchNorm)": jax_model.BatchNorm,
    "nnx.BatchNorm(momentum=0.1), torch's value copied": lambda n: nnx.BatchNorm(n, momentum=0.1, rngs=nnx.Rngs(0)),
    "nnx.BatchNorm() at Flax's default momentum 0.99": lambda n: nnx.BatchNorm(n, rngs=nnx.Rngs(0)),
    "nnx.BatchNorm(momentum=0.9): the convention right, biased variance": lambda n: nnx.BatchNorm(
        n, momentum=0.9, rngs=nnx.Rngs(0)),
}


def main() -> None:
    data = load_fashion_mnist()
    proof = Proof(PORT, data)
    test_t, test_j = proof.inputs(data.test_images[:2000], np.float32)
    model_t, variables, _ = proof.pair(np.float32)
    for i in range(20):
        proof.torch.run(model_t, proof.inputs(proof.batch(i)[0], np.float32)[0], train=True)
    state_t = proof.torch.state(model_t)
    pred_t = proof.torch.run(model_t, test_t, train=False).argmax(1)
    for name, norm in PORTS.items():
        model = jax_model.model(0, norm=norm)
        params = nnx.state(model, nnx.Param)
        nnx.replace_by_pure_dict(params, jax.tree.map(jnp.asarray, variables["params"]))
        nnx.update(model, params)
        model.train()
        for i in range(20):
            model(jnp.asarray(proof.inputs(proof.batch(i)[0], np.float32)[1]))
        model.eval()
        pred_j = np.asarray(model(jnp.asarray(test_j))).argmax(1)
        stats = {"batch_stats": nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))}
        back = jax_to_torch(PORT, jax.tree.map(np.asarray, {**variables, **stats}))
        off = max(np.abs(back[n] / state_t[n] - 1).max() for n in back if ".running_var" in n)
        off_mean = max(np.abs(back[n] - state_t[n]).max() / np.abs(state_t[n]).max() for n in back
                       if ".running_mean" in n)
        print(f"{name}: running variance up to {100 * off:.2f}% off, running mean up to {100 * off_mean:.1f}% of its "
              f"scale; eval predictions agree with torch's on {100 * (pred_j == pred_t).mean():.1f}% of 2,000 "
              "test images")
    (_, ref), _ = _grads(proof, np.float64)
    (_, g32_t), (_, g32_j) = _grads(proof, np.float32)
    top = max(np.abs(g).max() for g in ref.values())
    for n in ("conv1.bias", "conv2.bias", "fc1.bias"):
        rel_naive = np.abs(g32_t[n] - g32_j[n]).max() / np.abs(g32_t[n]).max()
        print(f"{n}: true gradient <= {np.abs(ref[n]).max():.2g} (float64); torch and JAX float32 differ by "
              f"{rel_naive:.2f} of their own scale; against the float64 reference each is within "
              f"{np.abs(g32_t[n] - ref[n]).max() / top:.1g} (torch) and {np.abs(g32_j[n] - ref[n]).max() / top:.1g} "
              f"(JAX) of the model's largest gradient")


def _grads(proof, dtype):
    from parity.checks import grads_pair

    torch.manual_seed(0)
    return grads_pair(proof, dtype)


if __name__ == "__main__":
    main()
