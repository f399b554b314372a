"""Which model a run uses: the idiomatic port (Linen or NNX, --api) or its custom-VJP variant (same
parameters, same math: flax_impl/custom_vjp.py).

Chosen per backend by measurement, both compiled with the same XLA options and dispatched the same
way (docs/performance.md), samples/s of the training step at batch 64:
- cpu (2-core AMD EPYC, `make bench`): custom-vjp faster (README, Performance).
- gpu (one H200, benchmarks/gpu_check.sh at 45053aa, issue #31): custom-vjp 578,290 against the
  idiomatic model's 378,451 (1.53x) under Linen, 567,931 against 377,084 (1.51x) under NNX.
- tpu: unmeasured, so the idiomatic model, which readers come to learn.
The idiomatic model stays one flag away everywhere: --variant idiomatic.
"""

from __future__ import annotations

import jax
from flax import linen as nn

from flax import nnx

from flax_impl import nnx_model
from flax_impl.custom_vjp import CustomVjpConvnet, NnxCustomVjpConvnet
from flax_impl.model import Convnet

VARIANTS: dict[str, type[Convnet]] = {"idiomatic": Convnet, "custom-vjp": CustomVjpConvnet}
NNX_VARIANTS: dict[str, type[nnx_model.Convnet]] = {"idiomatic": nnx_model.Convnet, "custom-vjp": NnxCustomVjpConvnet}
DEFAULT_VARIANT = {"cpu": "custom-vjp", "gpu": "custom-vjp"}  # any other backend: "idiomatic"
# The variant's earlier name (until issue #31 named it for what it is, not where it was first measured).
ALIASES = {"cpu-tuned": "custom-vjp"}
VARIANT_CHOICES = ("auto", *VARIANTS, *ALIASES)


def resolve_variant(name: str, platform: str) -> str:
    """'auto' becomes the backend's default; other names are checked."""
    if name == "auto":
        return DEFAULT_VARIANT.get(platform, "idiomatic")
    name = ALIASES.get(name, name)
    if name not in VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; use one of {', '.join(('auto', *VARIANTS))}")
    return name


def build_model(variant: str, kernel_size: int = 3, init: str = "torch") -> Convnet:
    return VARIANTS[variant](kernel_size, init)


def build_nnx_model(variant: str, rngs: nnx.Rngs, kernel_size: int = 3, init: str = "torch") -> nnx_model.Convnet:
    return NNX_VARIANTS[variant](kernel_size, init, rngs=rngs)


def layer_outputs(model: nn.Module, variables, x) -> dict[str, jax.Array]:
    """Every layer's output by name (conv1, pool1, ..., dense2), recorded from the model's own forward pass.

    The model is left as it is: an interceptor sees the inputs and outputs of its pool method and
    of its dense layers, which are exactly the values that pass between torch's named layers.
    """
    seen: dict[str, list] = {"pool": [], "dense1": [], "dense2": []}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        name = "pool" if context.method_name == "pool" else context.module.name
        if name in seen:
            seen[name].append((args[0], out))  # (input, output)
        return out

    with nn.intercept_methods(record):
        model.apply(variables, x)
    (conv1, pool1), (conv2, pool2) = seen["pool"]  # a pool's input is the ReLU'd convolution
    ((flatten, _),) = seen["dense1"]
    ((dense1, dense2),) = seen["dense2"]
    return {"conv1": conv1, "pool1": pool1, "conv2": conv2, "pool2": pool2, "flatten": flatten,
            "dense1": dense1, "dense2": dense2}


def nnx_layer_outputs(model: nnx_model.Convnet, x) -> dict[str, jax.Array]:
    """layer_outputs for an NNX model: the same values, recorded from the model's own forward pass
    on a clone whose pool and dense layers report their inputs and outputs (the model is left as it is)."""
    seen: dict[str, list] = {"pool": [], "dense1": [], "dense2": []}
    clone = nnx.clone(model)

    def recording(name, fn):
        def call(inputs):
            out = fn(inputs)
            seen[name].append((inputs, out))
            return out
        return call

    clone.pool = recording("pool", clone.pool)
    clone.dense1, clone.dense2 = recording("dense1", clone.dense1), recording("dense2", clone.dense2)
    clone(x)
    (conv1, pool1), (conv2, pool2) = seen["pool"]  # a pool's input is the ReLU'd convolution
    ((flatten, _),) = seen["dense1"]
    ((dense1, dense2),) = seen["dense2"]
    return {"conv1": conv1, "pool1": pool1, "conv2": conv2, "pool2": pool2, "flatten": flatten,
            "dense1": dense1, "dense2": dense2}
