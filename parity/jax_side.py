"""The JAX side of a port as pure functions, whichever Flax API wrote it: variables in, outputs out.

Variables are plain nested dicts, {"params": ..., "batch_stats": ...} (the second only where the model
keeps running statistics), in both APIs, so the kit converts, compares and steps them the same way.
`run` can record every named submodule's output and replace each dropout layer's random mask by the
kit's (parity.masks), the two things a layer-by-layer comparison needs.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen, nnx

from parity.compare import cut
from parity.port import JaxSide

# Called for each submodule call while recording: hook(name, call, module, args, kwargs) -> output.
Hook = Callable[[str, Callable, Any, tuple, dict], Any]


class _Tap(nnx.Module):
    """Stands in for one NNX submodule while the kit records or injects: calls the hook with the original."""

    def __init__(self, inner: nnx.Module, name: str, hook: Hook):
        self.inner, self.name, self.hook = inner, name, nnx.static(hook)

    def __call__(self, *args, **kwargs):
        return self.hook(self.name, self.inner, self.inner, args, kwargs)

    def __getattr__(self, attribute):
        """Everything else is the module's own: a model may call its other methods or read its fields
        (nanoGPT's tied lm_head: transformer.wte.attend(x)); those calls are not recorded."""
        if attribute in ("inner", "name", "hook") or attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)


def _called(module) -> bool:
    """A module the model calls, which the kit can stand a _Tap in for: not a container (nnx.List,
    nnx.Dict, nnx.Sequential's .layers), which the model iterates or indexes instead (issue #32: a tap
    there broke every model with a list of blocks, "'_Tap' object is not iterable")."""
    return callable(module) and not isinstance(module, (nnx.List, nnx.Dict))


@contextlib.contextmanager
def _tapped(model: nnx.Module, hook: Hook):
    """Within: every called submodule of the model behind a _Tap, innermost first (so nested calls are
    seen too); the originals are put back after, so the model's state keeps its own paths."""
    found = sorted(((path, m) for path, m in nnx.iter_modules(model) if path and _called(m)),
                   key=lambda pm: -len(pm[0]))
    swapped = []
    for path, module in found:
        parent = model
        for part in path[:-1]:
            parent = parent[part] if isinstance(part, int) else getattr(parent, part)
        _put(parent, path[-1], _Tap(module, ".".join(map(str, path)), hook))
        swapped.append((parent, path[-1], module))
    try:
        yield model
    finally:
        for parent, key, module in reversed(swapped):
            _put(parent, key, module)


def _put(parent, key, value) -> None:
    if isinstance(key, int):
        parent[key] = value
    else:
        setattr(parent, key, value)


def replace_values(state: nnx.State, values: dict, what: str) -> nnx.State:
    """A copy of `state` holding `values` (a plain nested dict of its keys and shapes, checked: NNX's
    replace_by_pure_dict keeps the old value of a key that `values` lacks)."""
    def shapes(tree):
        return {jax.tree_util.keystr(path, simple=True, separator="."): jnp.shape(leaf)
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    have, want = shapes(values), shapes(nnx.to_pure_dict(state))
    if have != want:
        wrong = [f"missing {k}" for k in sorted(want.keys() - have.keys())] + \
                [f"unexpected {k}" for k in sorted(have.keys() - want.keys())] + \
                [f"{k} {have[k]} where the model has {want[k]}" for k in sorted(want.keys() & have.keys())
                 if have[k] != want[k]]
        raise ValueError(f"{what} do not match the model's: {cut(wrong)}")
    state = jax.tree.map(lambda a: a, state)  # a new State: replace_by_pure_dict works in place
    nnx.replace_by_pure_dict(state, values)
    return state


def as_args(x) -> tuple:
    """The model's positional arguments: one array, or a tuple of them (nanoGPT's (idx, targets))."""
    return x if isinstance(x, tuple) else (x,)


_DOT_PRODUCT_ATTENTION = jax.nn.dot_product_attention


def _float64_attention(query, key, value, bias=None, mask=None, *, scale=None, is_causal=False,
                       query_seq_lengths=None, key_value_seq_lengths=None, local_window_size=None,
                       implementation=None, return_residual=False):
    """jax.nn.dot_product_attention's documented computation, in the inputs' precision. JAX's own always
    takes the softmax in float32 ("Softmax ... is always carried out in fp32", jax/_src/nn/functions.py):
    in a float64 check a correct nnx.MultiHeadAttention port was 3.6e-9 off (issue #32). Arguments this
    does not cover go to JAX's own."""
    if query_seq_lengths is not None or key_value_seq_lengths is not None or local_window_size is not None \
            or return_residual or query.dtype != jnp.float64:
        return _DOT_PRODUCT_ATTENTION(query, key, value, bias, mask, scale=scale, is_causal=is_causal,
                                      query_seq_lengths=query_seq_lengths, key_value_seq_lengths=key_value_seq_lengths,
                                      local_window_size=local_window_size, implementation=implementation,
                                      return_residual=return_residual)
    unbatched = query.ndim == 3
    if unbatched:
        query, key, value = query[None], key[None], value[None]
    heads, kv_heads = query.shape[-2], key.shape[-2]
    if kv_heads != heads:  # grouped-query attention: each key/value head serves heads // kv_heads queries
        key, value = jnp.repeat(key, heads // kv_heads, axis=-2), jnp.repeat(value, heads // kv_heads, axis=-2)
    scale = 1.0 / jnp.sqrt(query.shape[-1]) if scale is None else scale
    logits = jnp.einsum("BTNH,BSNH->BNTS", query, key) * scale
    if bias is not None:
        logits = logits + bias
    keep = jnp.ones(logits.shape, bool)
    if mask is not None:
        keep = keep & mask
    if is_causal:
        keep = keep & jnp.tril(jnp.ones(logits.shape[-2:], bool))
    logits = jnp.where(keep, logits, 0.7 * jnp.finfo(logits.dtype).min)  # JAX's own large negative
    out = jnp.einsum("BNTS,BSNH->BTNH", jax.nn.softmax(logits, axis=-1), value)
    return out[0] if unbatched else out


@contextlib.contextmanager
def float64_attention(enabled: bool):
    """Within (if enabled): jax.nn.dot_product_attention computes float64 inputs in float64."""
    if not enabled:
        yield
        return
    jax.nn.dot_product_attention = _float64_attention
    try:
        yield
    finally:
        jax.nn.dot_product_attention = _DOT_PRODUCT_ATTENTION


def _float64(variables: dict) -> bool:
    return any(jnp.asarray(leaf).dtype == jnp.float64 for leaf in jax.tree.leaves(variables["params"]))


def is_dropout(module) -> bool:
    return isinstance(module, (nnx.Dropout, linen.Dropout))


# Flax's own attention modules. With dropout_rate > 0 their attention function (Flax's
# dot_product_attention, by default) drops the attention weights with a mask it draws by
# jax.random.bernoulli(key, keep probability, shape): the kit gives that mask (bernoulli_given), the
# module does the rest its own way. Their default broadcast_dropout=True draws one (1, 1, T, S) mask for
# the whole batch and every head, where torch draws one per weight.
ATTENTION = (nnx.MultiHeadAttention, linen.MultiHeadDotProductAttention)


def is_attention_with_dropout(module) -> bool:
    return isinstance(module, ATTENTION) and (getattr(module, "dropout_rate", 0.0) or 0.0) > 0


@contextlib.contextmanager
def bernoulli_given(give: Callable[[Any, Any], Any]):
    """Within: jax.random.bernoulli(key, p, shape) answers give(p, shape) where that is not None (a keep
    mask), and draws as it did before otherwise."""
    before = jax.random.bernoulli

    def bernoulli(key, p=0.5, shape=None, *args, **kwargs):
        keep = give(p, shape)
        return before(key, p, shape, *args, **kwargs) if keep is None else keep

    jax.random.bernoulli = bernoulli
    try:
        yield
    finally:
        jax.random.bernoulli = before


def attention_dropout_probe(module, n: int) -> np.ndarray:
    """A Flax attention module's own attention function dropping uniform weights in train mode (q = k = 0
    over L keys, v = the identity, one batch and one head, so broadcasting changes nothing): each of about n
    outputs is one dropped, rescaled weight, times L (parity.torch_side.sdpa_dropout_probe's twin)."""
    L = int(math.ceil(math.sqrt(n)))
    q = jnp.zeros((1, L, 1, 1), jnp.float32)
    v = jnp.eye(L, dtype=jnp.float32)[None, :, None, :]
    out = module.attention_fn(q, q, v, dropout_rng=jax.random.key(0), dropout_rate=module.dropout_rate,
                              broadcast_dropout=module.broadcast_dropout, deterministic=False)
    return np.asarray(out * L).reshape(-1)


class JaxModel:
    """Builds, runs and steps one JaxSide's model functionally."""

    def __init__(self, side: JaxSide):
        self.side = side
        self.api = side.api

    # -- variables -------------------------------------------------------------------------------
    def init(self, seed: int) -> tuple[dict, Any]:
        """(variables, rest): the seeded draw as plain dicts, and whatever else the model carries
        (NNX: its graph and other state; Linen: the module)."""
        if self.api == "nnx":
            model = self.side.model(seed)
            graphdef, params, stats, other = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
            variables = {"params": nnx.to_pure_dict(params)}
            if jax.tree.leaves(stats):
                variables["batch_stats"] = nnx.to_pure_dict(stats)
            return variables, (graphdef, params, stats, other)
        module, variables = self.side.model(seed)
        return {k: jax.tree.map(jnp.asarray, dict(v)) for k, v in variables.items()}, module

    def _nnx_model(self, rest, variables: dict) -> nnx.Module:
        graphdef, params, stats, other = rest
        params = replace_values(params, variables["params"], "JAX parameters")
        if "batch_stats" in variables:
            stats = replace_values(stats, variables["batch_stats"], "JAX batch statistics")
        other = jax.tree.map(lambda a: a, other)  # fresh Variables, made in the current trace
        model = nnx.merge(graphdef, params, stats, other)
        if _float64(variables):
            # nnx.Embed fixes its computation dtype when it is built, to its parameters' (float32): with
            # the kit's float64 values it still looked up float32 (issue #32: nanoGPT's wte and wpe,
            # 3.7e-9 off in float64). A float64 check computes every such module in float64.
            for _, module in nnx.iter_modules(model):
                if getattr(module, "dtype", None) == jnp.float32:
                    module.dtype = jnp.float64
        return model

    # -- forward ---------------------------------------------------------------------------------
    def run(self, rest, variables: dict, x, train: bool, hook: Hook | None = None):
        """(output, new batch_stats or None): one forward pass in train or eval mode, eagerly if hooked; x
        one array or a tuple of them, the model's arguments; the output as the model returns it."""
        if self.api == "nnx":
            model = self._nnx_model(rest, variables)
            model.train() if train else model.eval()
            with _tapped(model, hook) if hook is not None else contextlib.nullcontext(), \
                    float64_attention(_float64(variables)):
                out = model(*as_args(x))
            stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)) if "batch_stats" in variables else None
            return out, stats
        module = rest
        mutable = ["batch_stats"] if train and "batch_stats" in variables else False
        context = linen.intercept_methods(_linen_interceptor(hook)) if hook else contextlib.nullcontext()
        with context, float64_attention(_float64(variables)):
            mode = {self.side.train_kwarg: train} if self.side.train_kwarg else {}
            # A fixed dropout key: the kit's checks give dropout the masks they compare (parity.record).
            result = module.apply(variables, *as_args(x), **mode, rngs={"dropout": jax.random.key(0)}, mutable=mutable)
        if mutable:
            out, new = result
            return out, jax.tree.map(jnp.asarray, dict(new["batch_stats"]))
        return result, variables.get("batch_stats")

    # -- a train step ----------------------------------------------------------------------------
    def loss_and_grads(self, rest, variables: dict, x, y, hook: Hook | None = None):
        """(loss, gradients w.r.t. params, new batch_stats): the train-mode loss and its gradient."""
        def loss_fn(params):
            out, stats = self.run(rest, {**variables, "params": params}, x, True, hook)
            return self.side.loss(out, y), stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
        return loss, grads, stats

    def step(self, rest, variables: dict, tx, opt_state, x, y, hook: Hook | None = None):
        """One training step: (loss, new variables, new optimizer state), the optimizer's update on the
        params (nnx.Optimizer.update and TrainState.apply_gradients do the same: tx.update, apply)."""
        if self.side.train_step is not None:
            return self._own_step(rest, variables, tx, opt_state, x, y, hook)
        loss, grads, stats = self.loss_and_grads(rest, variables, x, y, hook)
        updates, opt_state = tx.update(grads, opt_state, variables["params"])
        new = {**variables, "params": optax.apply_updates(variables["params"], updates)}
        if stats is not None:
            new["batch_stats"] = stats
        return loss, new, opt_state


    def _own_step(self, rest, variables: dict, tx, carried, x, y, hook: Hook | None):
        """JaxSide.train_step, the port's own: (loss, new variables, what the next step carries on: the
        NNX model and its nnx.Optimizer, or the Linen TrainState). Run with jit off (the step may be
        jitted), so that the hook records values and gives dropout the kit's masks."""
        with jax.disable_jit():
            if self.api == "nnx":
                model = carried.model if isinstance(carried, _OwnStep) else self._nnx_model(rest, variables)
                model.train()
                with _tapped(model, hook) if hook is not None else contextlib.nullcontext(), \
                        float64_attention(_float64(variables)):
                    if not isinstance(carried, _OwnStep):
                        # built on the tapped model: its state has the structure the step's gradients have
                        # (every step taps the same modules, so the structure stays)
                        carried = _OwnStep(model, nnx.Optimizer(model, tx, wrt=nnx.Param))
                    loss = self.side.train_step(model, carried.optimizer, x, y)
                new = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
                if "batch_stats" in variables:
                    new["batch_stats"] = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
                return loss, new, carried
            if "batch_stats" in variables:
                raise NotImplementedError("a Linen train_step with batch statistics: the kit builds a plain "
                                          "TrainState (no batch_stats field); use the kit's step (train_step=None)")
            from flax.training.train_state import TrainState

            state = carried.state if isinstance(carried, _OwnStep) else TrainState.create(
                apply_fn=rest.apply, params=variables["params"], tx=tx)
            context = linen.intercept_methods(_linen_interceptor(hook)) if hook else contextlib.nullcontext()
            with context, float64_attention(_float64(variables)):
                state, loss = self.side.train_step(state, x, y)
            return loss, {"params": state.params}, _OwnStep(state=state)


class _OwnStep:
    """What a port's own train step carries from one step to the next."""

    def __init__(self, model=None, optimizer=None, state=None):
        self.model, self.optimizer, self.state = model, optimizer, state


def _linen_interceptor(hook: Hook):
    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not module.path:
            return next_fun(*args, **kwargs)
        return hook(".".join(map(str, module.path)), next_fun, module, args, kwargs)

    return interceptor

