"""Every check of a port, each a function of one Proof, fastest first. Each returns what it measured
(one line per thing compared) or raises parity.compare.Split saying where the two sides first split.

Bounds, and how they were measured (each check prints what it compared; `python -m parity` runs them):
- float64, both sides: the same formulas agree to ~1e-15 relative per layer and ~1e-14 over a dozen
  steps (examples/: <= 3e-15 forward, <= 2e-14 gradients, <= 4e-14 after 12 steps); bound 1e-9.
  A porting bug moves something by 1e-8 (a float32 schedule) to O(1) (a layout).
- float32: each side against the float64 torch reference; JAX's error may not exceed 16 times
  torch's own float32 error (or a floor of 256 float32 ulps of the tensor's scale). That is where
  TF32-class matmuls (~1e-3) show and float32 rounding (~1e-7) does not.
- Gradients whose true value is zero (a bias right before a BatchNorm): each side returns float noise,
  so a relative bound cannot judge them; every gradient is judged relative to the largest of its
  tensor's float64 gradient and 1e-3 of the model's largest gradient.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from parity.dataset import Dataset, epoch_order, num_batches, take
from parity.compare import Split, cut, first_split, scale, worst
from parity.jax_side import (JaxModel, attention_dropout_probe, bernoulli_given, is_attention_with_dropout,
                              is_dropout)
from parity.port import Port
from parity.record import Masks, Recorder
from parity.torch_side import (ELEMENTWISE_DROPOUT, RNN_DROPOUT, SDPA_DROPOUT, TorchModel, recurrent_dropout_probe,
                               sdpa_dropout_probe, to_numpy)
from parity.weights import (collection, flat, jax_to_torch, map_problems, mapped, paths, to_torch_value,
                            torch_to_jax)

F64_RTOL = 1e-9
F32_FACTOR = 16
F32_FLOOR_ULPS = 256
F32_ULP = float(np.finfo(np.float32).eps)
F64_ULP = float(np.finfo(np.float64).eps)
GRAD_FLOOR = 1e-3  # of the model's largest gradient: where a tensor's own gradient is (truly) ~0
SCHEDULE_RTOL = 1e-12
TRAJECTORY_FACTOR = 16  # the float64 trajectory's bound in units of torch's own nudged divergence
TRAJECTORY_DRAWS = 3  # nudged torch float64 runs where JAX leaves the first one's bounds (trajectory_float64)
NEAR_TIE_BATCHES = 2  # more batches a float32 gradient split is asked on (check_loss_and_gradients)
INIT_SAMPLES = 2000  # values per tensor the init check wants (more draws for small tensors)
INIT_MAX_DRAWS = 32  # ... up to this many draws of the model: a 10-value bias gets 320 (KS vs half its bound: p ~ 2e-9)
UNDECLARED_EPOCHS = 4  # the schedule's walk where a port does not declare its run's length
NEAR_TIE_DRAWS = 4  # more nudged torch float32 runs where JAX leaves the first one's envelope (float32_drift)
F32_SCHEDULE_ULPS = 4  # a float32 JAX schedule's error, in ulps of the run's peak rate (rate_tolerance)
# Optimizer state: torch's names -> optax's, for the optimizers ports use most. Extend per port.
OPTIMIZER_STATE = {"exp_avg": "mu", "exp_avg_sq": "nu", "square_avg": "e_g", "acc_delta": "e_x",
                   "momentum_buffer": "trace", "sum": "sum_of_squares"}


@dataclass
class Proof:
    """A port and the real data it is proven on (a parity.Dataset, or an object with train_images,
    train_labels, test_images, test_labels such as this project's Fashion-MNIST); models and batches
    are built from them on demand."""

    port: Port
    dataset: Dataset
    seed: int = 0
    trajectory_epochs: int = 3  # the trajectories cross 2 epoch boundaries (schedules step there)
    steps_per_epoch: int = 4
    cache: dict = field(default_factory=dict)  # the JAX side's draws by seed, trajectories, torch's train pass

    def __post_init__(self):
        self.dataset = Dataset.of(self.dataset)
        self.torch = TorchModel(self.port.torch)
        self.jax = JaxModel(self.port.jax)

    def batch(self, i: int, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The i-th training batch of the seed's epoch-1 order: raw inputs, int64 labels."""
        size = size or self.port.batch_size
        order = epoch_order(len(self.dataset.train_labels), seed=self.seed, epoch=1)
        idx = order[i * size : (i + 1) * size]
        return take(self.dataset.train_inputs, idx), self.dataset.train_labels[idx].astype(np.int64)

    def inputs(self, raw, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        """Each side's model input for a batch of raw inputs, floating point in `dtype` (integer inputs,
        token ids, stay as the port's transforms make them)."""
        return in_dtype(self.port.torch_inputs(raw), dtype), in_dtype(self.port.jax_inputs(raw), dtype)

    def jax_layout(self, a):
        return jax.tree.map(self.port.to_jax_layout, a)

    def torch_layout(self, a):
        return jax.tree.map(self.port.to_torch_layout, a)

    def pair(self, dtype=np.float64, seed: int | None = None):
        """(torch model, JAX variables, JAX rest): torch's seeded draw, and JAX holding the same values."""
        seed = self.seed if seed is None else seed
        model = self.torch.build(seed, torch.float64 if dtype == np.float64 else torch.float32)
        _, rest = self.jax_init(seed)
        variables = torch_to_jax(self.port, self.torch.state(model), dtype)
        return model, variables, rest

    def jax_init(self, seed: int):
        if seed not in self.cache:
            self.cache[seed] = self.jax.init(seed)
        return self.cache[seed]

    def x64(self, dtype):
        return jax.enable_x64(dtype == np.float64)

    def torch_layer(self, jax_name: str) -> str:
        """The torch name of a JAX module path: Port.layers' entry, unless the torch forward never calls
        that name and does call the JAX's own, which then matches it by name. nanoGPT's model.py drops
        its attention's weights inside scaled_dot_product_attention where torch has it (the port's
        Port.layers maps that to the JAX attn_dropout) and in its own attn_dropout where it has not: one
        port, proven on either torch."""
        torch_name = self.port.torch_layer(jax_name)
        if torch_name == jax_name:
            return jax_name
        called = self.torch_train_pass()[1]
        return jax_name if torch_name not in called and jax_name in called else torch_name

    def torch_train_pass(self) -> tuple[dict[str, np.ndarray], set[str]]:
        """(the state after, the layer names called) of one train-mode pass of the seed's torch model on
        batch 0, float32, with the kit's masks (cached): what the forward calls, and what training moves."""
        if "torch train pass" not in self.cache:
            model, used = self.torch.build(self.seed), Recorder(Masks(0))
            self.torch.run(model, self.inputs(self.batch(0)[0], np.float32)[0], True, used)
            self.cache["torch train pass"] = (self.torch.state(model),
                                              {name for name, _ in used.order} | set(used.rates))
        return self.cache["torch train pass"]


def in_dtype(x, dtype):
    """x (an array, or a tuple of the model's arguments) with its floating-point arrays in dtype."""
    if isinstance(x, tuple):
        return tuple(in_dtype(a, dtype) for a in x)
    x = np.asarray(x)
    return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x


def jnp_tree(x):
    """NumPy arrays (one, or nested in tuples) as JAX arrays."""
    return jax.tree.map(jnp.asarray, x)


def output_items(out_t, out_j, bound_of) -> list:
    """("the output", torch's, JAX's, bound_of(torch's)) for each array the models return, in order:
    one for a single output, "the output[0]", "the output[1]", ... for a tuple (nanoGPT's (logits, loss))."""
    leaves_t, leaves_j = output_leaves(out_t), output_leaves(out_j)
    if [label for label, _ in leaves_t] != [label for label, _ in leaves_j]:
        raise Split(f"the outputs differ in structure: torch returns {[label for label, _ in leaves_t]}, JAX "
                    f"{[label for label, _ in leaves_j]}")
    return [(label, t, j, bound_of(t)) for (label, t), (_, j) in zip(leaves_t, leaves_j)]


def output_leaves(out, label: str = "the output") -> list[tuple[str, np.ndarray]]:
    if isinstance(out, (tuple, list)):
        return [leaf for i, o in enumerate(out) for leaf in output_leaves(o, f"{label}[{i}]")]
    if isinstance(out, dict):
        return [leaf for k, o in out.items() for leaf in output_leaves(o, f"{label}[{k!r}]")]
    return [] if out is None else [(label, np.asarray(out, np.float64) if np.ndim(out) == 0 else np.asarray(out))]


def logits_of(out, side=None) -> np.ndarray:
    """The predictions' scores, classes on the last axis: the side's own `scores` of the output if it has
    one (TorchSide.scores / JaxSide.scores), else the output, or its first array where the model returns
    several (nanoGPT's (logits, loss))."""
    if side is not None and side.scores is not None:
        return np.asarray(side.scores(out))
    return output_leaves(out)[0][1]

# ------------------------------------------------------------------------------------ structure


def torch_constants(proof: Proof, model, state: dict[str, np.ndarray]) -> dict[str, tuple]:
    """{name: shape} of torch's unmapped buffers that are constants of the architecture, not state: the
    same in another seed's model and unchanged by a train-mode pass on a real batch (nanoGPT's causal
    mask, the `bias` buffer model.py registers where torch has no scaled_dot_product_attention; a
    sinusoidal position table). The JAX side may compute them instead of holding them: the forward
    checks prove it did so alike. A buffer that training moves (running statistics, which start alike
    for every seed) or that the seed draws is state, and must be mapped."""
    parameters = {name for name, _ in model.named_parameters()}
    unmapped = [n for n in state if mapped(n) and n not in proof.port.weights and n not in parameters]
    if not unmapped:
        return {}
    other = proof.torch.state(proof.torch.build(proof.seed + 1))
    same = [n for n in unmapped if np.array_equal(state[n], other[n])]
    if same:
        after = proof.torch_train_pass()[0]
        same = [n for n in same if np.array_equal(state[n], after[n])]
    return {n: tuple(state[n].shape) for n in same}


def check_weight_map(proof: Proof) -> list[str]:
    """Every tensor of both sides is in the weight map, one to one, with matching shapes; torch's
    constant buffers (torch_constants) need no JAX tensor."""
    model = proof.torch.build(proof.seed)
    variables, _ = proof.jax_init(proof.seed)
    state = proof.torch.state(model)
    constants = torch_constants(proof, model, state)
    problems = map_problems(proof.port, {n: v for n, v in state.items() if n not in constants}, variables,
                            proof.torch.tied(model))
    if problems:
        raise Split(f"{proof.port.name}: the weight map does not match the models ({len(problems)} problems): "
                    + cut(problems))
    held = ["torch's constants, held by torch alone (the same for every seed, unchanged by training): "
            + cut([f"{n} {shape}" for n, shape in constants.items()])] if constants else []
    return [f"{len(proof.port.weights)} tensors mapped one to one", *held]


def _layer(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def check_parameter_counts(proof: Proof) -> list[str]:
    """Trainable parameters layer by layer (torch's parameters vs JAX's params collection), and in total."""
    model = proof.torch.build(proof.seed)
    variables, _ = proof.jax_init(proof.seed)
    jax_sizes = {path: a.size for path, a in flat(variables).items() if path.startswith("params/")}
    torch_layers, jax_layers = {}, {}
    for name, p in model.named_parameters():
        torch_layers[_layer(name)] = torch_layers.get(_layer(name), 0) + p.numel()
        jax_layers[_layer(name)] = jax_layers.get(_layer(name), 0) + sum(jax_sizes.pop(path, 0)
                                                                           for path in paths(proof.port, name))
    for path, size in jax_sizes.items():  # JAX params no torch parameter maps to (a buffer, say)
        jax_layers[path] = jax_layers.get(path, 0) + size
    lines = []
    for layer in [*torch_layers, *(layer for layer in jax_layers if layer not in torch_layers)]:
        t, j = torch_layers.get(layer, 0), jax_layers.get(layer, 0)
        if t != j:
            raise Split(f"parameter counts: first split at {layer}: torch {t:,}, JAX {j:,} trainable parameters")
        lines.append(f"{layer}: {t:,}")
    total = sum(torch_layers.values())
    return [*lines, f"total: {total:,} on both sides"]


def check_inputs(proof: Proof) -> list[str]:
    """Both sides' input transforms (the training scripts' normalisation) on the same 256 real images:
    the same values, in torch's layout, to float32 rounding."""
    images, _ = proof.batch(0, 256)
    xt, xj = proof.port.torch_inputs(images), proof.torch_layout(proof.port.jax_inputs(images))
    items = [(label.replace("the output", "the inputs"), t, j, 4 * F32_ULP * max(scale(t), 1.0))
             for label, t, j, _ in output_items(xt, xj, lambda t: 0.0)]
    return first_split(items, "input transforms")


def check_init(proof: Proof, seeds: int = 3, alpha: float = 1e-4) -> list[str]:
    """Each tensor's initial draw: the same distribution on both sides (two-sample Kolmogorov-Smirnov
    over several draws each: at least `seeds`, and enough for INIT_SAMPLES values of the smallest
    tensor, up to INIT_MAX_DRAWS; three draws of a 10-value bias could not tell U(+-b) from
    U(+-b/2), issue #32), and the same spread (Brown-Forsythe: Levene's test about the median), each at
    alpha / 2 so a correct port fails no more often than under one test. Why the spread: a truncated
    normal of the same std (timm's trunc_normal_ habit, cut at 2 std: 0.88 of the std) moves KS's
    statistic by 0.02 only, and KS passed it on nanoGPT (p ~ 0.02 over 6,240 values, measured) where
    Brown-Forsythe gives p ~ 4e-14 (issue #33's catalogue). A seed gives the same draw again and
    another seed another draw."""
    from scipy.stats import ks_2samp, levene

    first = proof.torch.state(proof.torch.build(0))
    sizes = [first[name].size for name in proof.port.weights if first[name].size and np.ptp(first[name]) > 0]
    draws = max(seeds, min(INIT_MAX_DRAWS, -(-INIT_SAMPLES // min(sizes)))) if sizes else seeds
    torch_draws = [first] + [proof.torch.state(proof.torch.build(s)) for s in range(1, draws)]
    jax_draws = [jax_to_torch(proof.port, proof.jax.init(s)[0]) for s in range(draws)]  # in torch's names
    again = jax_to_torch(proof.port, proof.jax.init(0)[0])
    lines = []
    for name in proof.port.weights:
        path = "+".join(paths(proof.port, name))
        per_draw = max(1, -(-INIT_SAMPLES // max(first[name].size, 1)))
        use = min(draws, max(seeds, per_draw))  # large tensors need no extra draws
        t = np.concatenate([d[name].ravel() for d in torch_draws[:use]]).astype(np.float64)
        j = np.concatenate([d[name].ravel() for d in jax_draws[:use]]).astype(np.float64)
        if np.ptp(t) == 0 and np.ptp(j) == 0:  # constants (a BatchNorm's scale, a running mean)
            if t[0] != j[0]:
                raise Split(f"initialisation: first split at {name} ({path}): torch starts at {t[0]:g}, "
                            f"JAX at {j[0]:g}")
            lines.append(f"{name}: the constant {t[0]:g} on both sides")
            continue
        p, spread = ks_2samp(t, j).pvalue, levene(t, j, center="median").pvalue
        if min(p, spread) < alpha / 2:
            raise Split(f"initialisation: first split at {name} ({path}): not the same distribution (KS p = "
                        f"{p:.2g}, spread p = {spread:.2g} over {use} draws): torch mean {t.mean():.4g} std {t.std():.4g} range "
                        f"[{t.min():.4g}, {t.max():.4g}], JAX mean {j.mean():.4g} std {j.std():.4g} range "
                        f"[{j.min():.4g}, {j.max():.4g}]")
        if not np.array_equal(again[name], jax_draws[0][name]):
            raise Split(f"initialisation: {path}: the same seed gave JAX another draw")
        if draws > 1 and np.array_equal(jax_draws[0][name], jax_draws[1][name]):
            raise Split(f"initialisation: {path}: seeds 0 and 1 gave JAX the same draw (is the seed used?)")
        lines.append(f"{name}: KS p = {p:.2g}, spread p = {spread:.2g} ({t.size:,} values a side)")
    return lines


# ------------------------------------------------------------------------------------ forward


def jax_hook(proof: Proof, recorder: Recorder):
    """The JAX side's recording hook: outputs by torch's layer names; dropout gets torch's masks."""
    def hook(name, call, module, args, kwargs):
        path, name = name, proof.torch_layer(name)
        if is_dropout(module):
            x = args[0]
            probe = np.asarray(call(jnp.ones(x.shape, x.dtype), *args[1:], **kwargs))
            mask = recorder.masks.get((name, recorder.next_call(name))) if recorder.masks else None
            active = not np.all(probe == 1)
            if active and mask is not None:  # torch's mask, scaled as this layer scales its survivors
                mask = proof.port.to_jax_layout(mask)
                if mask.shape != x.shape:
                    raise Split(f"dropout at {name}: torch dropped a tensor of shape {mask.shape} there, JAX drops "
                                f"one of shape {x.shape}: not the same tensor (the attention's weights against "
                                f"its output?)")
                out = x * jnp.asarray(mask, x.dtype) * probe.max()
            else:
                if active and recorder.masks is not None:  # a JAX dropout torch drew no mask for, by that name
                    recorder.unmasked.append(name)
                out = call(*args, **kwargs)
        elif is_attention_with_dropout(module):
            with bernoulli_given(attention_masks(proof, recorder, path, module)):
                out = call(*args, **kwargs)
        else:
            out = call(*args, **kwargs)
        value = out[0] if isinstance(out, tuple) and out else out  # as torch_side.first_tensor
        if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
            recorder.record(name, value)
        elif isinstance(value, jax.core.Tracer):
            recorder.record(name, np.zeros(value.shape))  # under autodiff: the order, not the values
        return out

    return hook


def attention_dropout_name(proof: Proof, path: str) -> str:
    """torch's name of the dropout inside the Flax attention module at `path` (parity.jax_side.ATTENTION):
    Port.layers' torch name for "<path>.scaled_dot_product_attention.dropout" if it has one, else the
    torch module's own of that path, as torch names the dropout inside F.scaled_dot_product_attention
    (parity.torch_side.SDPA_DROPOUT: "<the calling module>.scaled_dot_product_attention.dropout")."""
    own = f"{path}.{SDPA_DROPOUT}"
    mapped = proof.torch_layer(own)
    return mapped if mapped != own else f"{proof.torch_layer(path)}.{SDPA_DROPOUT}"


def attention_masks(proof: Proof, recorder: Recorder, path: str, module):
    """For the dropout inside a Flax attention module: give(p, shape) -> torch's keep mask of that call
    (attention_dropout_name), in JAX's layout, or None (draw as JAX does) where torch drew none. A mask of
    another shape is a split: Flax's default broadcast_dropout=True asks for one (1, 1, T, S) mask over
    the batch and the heads, where torch drops each weight."""
    dropout = attention_dropout_name(proof, path)

    def give(p, shape):
        if recorder.masks is None:
            return None
        mask = recorder.masks.get((dropout, recorder.next_draw(dropout)))
        if mask is None:  # a JAX dropout torch drew no mask for, by that name
            recorder.unmasked.append(dropout)
            return None
        mask = proof.port.to_jax_layout(mask)
        if tuple(shape) != mask.shape:
            shared = (", one mask shared over the batch and the heads (broadcast_dropout=True, Flax's default): "
                      "set broadcast_dropout=False") if getattr(module, "broadcast_dropout", False) else ""
            raise Split(f"dropout at {dropout}: torch drops each attention weight, a mask of shape {mask.shape}; "
                        f"JAX's {type(module).__name__} at {path} draws a mask of shape {tuple(shape)}{shared}")
        return jnp.asarray(mask)

    return give


def forward_pair(proof: Proof, train: bool, dtype=np.float64, batch: int = 0, masks_seed: int = 0):
    """Both sides' forward passes from the same weights on one batch, every layer recorded."""
    images, _ = proof.batch(batch)
    xt, xj = proof.inputs(images, dtype)
    model, variables, rest = proof.pair(dtype)
    masks = Masks(masks_seed)
    rec_t, rec_j = Recorder(masks), Recorder(masks)
    out_t = proof.torch.run(model, xt, train, rec_t)
    with proof.x64(dtype):
        out_j, stats_j = proof.jax.run(rest, jnp_tree(variables), jnp_tree(xj), train, jax_hook(proof, rec_j))
        out_j = jax.tree.map(np.asarray, out_j)
    return (model, out_t, rec_t), (proof.torch_layout(out_j), stats_j, rec_j)


def layer_items(proof: Proof, rec_t: Recorder, rec_j: Recorder, bound_of):
    """(label, torch, JAX-in-torch-layout, bound_of(name, call, torch's value)) for every layer both
    sides recorded, in torch's order."""
    items = []
    for name, call in rec_t.order:
        if len(rec_j.outputs.get(name, [])) <= call:
            continue  # a layer JAX has no module for (a functional call there): compared downstream
        t = rec_t.outputs[name][call]
        j = proof.port.to_torch_layout(rec_j.outputs[name][call])
        label = name if len(rec_t.outputs[name]) == 1 else f"{name} (call {call + 1})"
        items.append((label, t, j, bound_of(name, call, t)))
    return items


def _check_forward(proof: Proof, train: bool) -> list[str]:
    (model, out_t, rec_t), (out_j, stats_j, rec_j) = forward_pair(proof, train)
    mode = "train" if train else "eval"
    shared = [n for n, _ in rec_t.order if n in rec_j.outputs]
    if not shared:
        raise Split(f"forward ({mode}): no layer name is shared by both sides; give Port.layers")
    items = layer_items(proof, rec_t, rec_j, lambda name, call, t: F64_RTOL * max(scale(t), 1e-300))
    items += output_items(out_t, out_j, lambda t: F64_RTOL * max(scale(t), 1e-300))
    try:
        lines = first_split(items, f"forward in {mode} mode, float64, the same weights"
                            + (" and dropout masks" if train else ""))
    except Split as split:
        if rec_j.unmasked:  # say why the masks could not be shared: the usual cause of a train-mode split
            masked = sorted({name for name, _ in rec_t.masks.drawn}) if rec_t.masks else []
            raise Split(f"{split}; JAX's dropout {cut(sorted(set(rec_j.unmasked)), 3)} found no torch mask of that "
                        f"name (torch drew masks at {cut(masked, 3)}): map them in Port.layers") from None
        raise
    if train and stats_j is not None:  # the running statistics this one pass left behind
        torch_state = proof.torch.state(model)
        new = {**torch_to_jax(proof.port, torch_state, np.float64), "batch_stats": stats_j}
        lines += compare_variables(proof, torch_state, new, "running statistics after one train-mode pass",
                                   only="batch_stats/")
    return lines


def check_forward_eval(proof: Proof) -> list[str]:
    """Eval mode, float64, the same weights: every named layer's output, then the model's output."""
    return _check_forward(proof, train=False)


def check_forward_train(proof: Proof) -> list[str]:
    """Train mode, float64, the same weights and dropout masks: every layer, and the running statistics."""
    return _check_forward(proof, train=True)


def compare_variables(proof: Proof, torch_state: dict, variables: dict, what: str, only: str = "",
                      rtol: float = F64_RTOL) -> list[str]:
    """torch's tensors against JAX's (mapped into torch's layout), in the weight map's order."""
    back = jax_to_torch(proof.port, variables)
    items = [(name, torch_state[name], back[name], rtol * max(scale(torch_state[name]), 1e-300))
             for name in proof.port.weights if paths(proof.port, name)[0].startswith(only)]
    return first_split(items, what)


def check_dropout(proof: Proof, n: int = 200_000) -> list[str]:
    """Each dropout the torch forward calls, its own convention, alone: in train mode it drops its rate
    of the elements (within 5 standard errors) and scales survivors by 1 / (1 - rate); in eval mode it
    is the identity; the JAX layer of the same name (Port.layers) does the same. A torch.nn.Dropout is
    asked directly; the dropout inside F.scaled_dot_product_attention (which the other checks replace by
    the kit's masks, parity.torch_side.SDPA_DROPOUT) is measured on torch's own SDPA at the rate the
    model passed it in that mode; the dropout between the layers of an nn.LSTM, nn.GRU or nn.RNN
    (parity.torch_side.RNN_DROPOUT) on torch's own two-layer module of that kind. A dropout module the model builds and never calls (nanoGPT's
    attn_dropout on its SDPA path) is not asked."""
    model, variables, rest = proof.pair(np.float32)
    images, _ = proof.batch(0, 4)
    xt, xj = proof.inputs(images, np.float32)
    modules = dict(model.named_modules())
    lines, asked = [], 0
    for train in (True, False):
        used = Recorder(Masks(0))
        proof.torch.run(model, xt, train, used)
        torch_layers = {name: modules[name] for name, _ in used.order if isinstance(modules.get(name), ELEMENTWISE_DROPOUT)}
        rates = {**{name: layer.p for name, layer in torch_layers.items()}, **used.rates}
        asked += len(rates)
        probes: dict = {}
        proof.jax.run(rest, jnp_tree(variables), jnp_tree(xj), train, _probing_hook(proof, Recorder(None), probes, n))
        extra = [name for name, out in probes.items() if name not in rates and np.any(out[0] != 1)]
        if extra:
            raise Split(f"dropout in {'train' if train else 'eval'} mode: JAX's {cut(extra, 3)} drops where the torch "
                        f"forward calls no dropout of that name (torch's: {cut(list(rates), 3) or 'none'}; Port.layers)")
        for name, p in rates.items():
            jax_probe = probes.get(name)
            if jax_probe is None:
                raise Split(f"dropout: torch's {name} has no JAX dropout layer of that name (Port.layers)")
            owner = modules.get(name.removesuffix(f".{RNN_DROPOUT}"))
            if name in torch_layers:
                torch_layers[name].train(train)
                t = torch_layers[name].forward(torch.ones(n)).numpy()
            elif isinstance(owner, torch.nn.RNNBase):
                t = recurrent_dropout_probe(owner, p, n) if train else np.ones(n)
            else:
                t = sdpa_dropout_probe(p, n)
            j = jax_probe[0]
            want = p if train else 0.0
            want_scale = 1 / (1 - want)
            for side, out in (("torch", t), ("JAX", j)):
                kept = out != 0
                dropped = 1 - kept.mean()
                se = np.sqrt(max(want * (1 - want), 1e-12) / out.size)
                survivors = np.unique(out[kept])
                if abs(dropped - want) > 5 * se or not np.allclose(survivors, want_scale, rtol=1e-6):
                    raise Split(f"dropout in {'train' if train else 'eval'} mode: first split at {name}: {side} drops "
                                f"{dropped:.4f} of its inputs (torch's rate: {want:.4f}) and scales survivors by "
                                f"{survivors[:3].tolist()} (want {want_scale:.6g})")
            lines.append(f"{name} ({'train' if train else 'eval'}): torch drops {1 - (t != 0).mean():.4f}, "
                         f"JAX {1 - (j != 0).mean():.4f}, survivors x{want_scale:.4g}")
        model.train(True)
    return lines if asked else ["no dropout layers"]


def _probing_hook(proof: Proof, recorder: Recorder, probes: dict, n: int):
    inner = jax_hook(proof, recorder)

    def hook(name, call, module, args, kwargs):
        if is_dropout(module):
            probe = call(jnp.ones((n,), jnp.float32), *args[1:], **kwargs)
            probes.setdefault(proof.torch_layer(name), []).append(np.asarray(probe))
        elif is_attention_with_dropout(module):  # does it drop in this mode? then its own function, probed
            drew = []
            with bernoulli_given(lambda p, shape: drew.append(p)):
                out = inner(name, call, module, args, kwargs)
            probe = attention_dropout_probe(module, n) if drew else np.ones(n, np.float32)
            probes.setdefault(attention_dropout_name(proof, name), []).append(probe)
            return out
        return inner(name, call, module, args, kwargs)

    return hook


def check_float32_forward(proof: Proof) -> list[str]:
    """float32, eval mode: each layer's error against the float64 torch reference is, on the JAX side, at
    most 16 times torch's own float32 error (or 256 ulps of the layer's scale): no lower precision."""
    (_, ref_out, ref), _ = forward_pair(proof, train=False, dtype=np.float64)
    (_, t_out, rec_t), (j_out, _, rec_j) = forward_pair(proof, train=False, dtype=np.float32)

    def bound(name, call, r):
        t_err = np.abs(rec_t.outputs[name][call] - r).max()
        return max(F32_FACTOR * t_err, F32_FLOOR_ULPS * F32_ULP * scale(r))

    items = layer_items(proof, ref, rec_j, bound)
    torch_err = {label: np.abs(np.asarray(t, np.float64) - r).max()
                 for label, r, t, _ in output_items(ref_out, t_out, lambda r: 0.0)}
    items += [(label, r, j, max(F32_FACTOR * torch_err[label], F32_FLOOR_ULPS * F32_ULP * scale(r)))
              for label, r, j, _ in output_items(ref_out, j_out, lambda r: 0.0)]
    return first_split(items, "forward in float32 against the float64 reference (bound: 16x torch's own error)")


def check_running_statistics(proof: Proof, passes: int = 5, eval_passes: int = 2) -> list[str]:
    """Running statistics (BatchNorm's mean and variance): after each of `passes` train-mode passes in
    float64 (the same weights, batches and masks) within 1e-9, which fixes momentum's convention, the
    unbiased variance and the update order; then eval-mode passes leave them unchanged, on both sides."""
    model, variables, rest = proof.pair(np.float64)
    if "batch_stats" not in variables:
        return ["no running statistics on either side" if not any(".running_" in n for n in proof.port.weights)
                else "torch keeps running statistics the JAX side does not: see the weight map"]
    stats_names = [n for n in proof.port.weights if collection(proof.port, n) == "batch_stats"]
    items = []
    with jax.enable_x64(True):
        jv = jax.tree.map(jnp.asarray, variables)
        for i in range(passes + eval_passes):
            train = i < passes
            images, _ = proof.batch(i)
            xt, xj = proof.inputs(images)
            masks = Masks(i)
            before_t = proof.torch.state(model)
            proof.torch.run(model, xt, train, Recorder(masks))
            _, stats = proof.jax.run(rest, jv, jnp_tree(xj), train, jax_hook(proof, Recorder(masks)))
            before_j = jax_to_torch(proof.port, jax.tree.map(np.asarray, jv))
            jv = {**jv, "batch_stats": stats}
            now_t, now_j = proof.torch.state(model), jax_to_torch(proof.port, jax.tree.map(np.asarray, jv))
            label = f"train-mode pass {i + 1}" if train else f"eval-mode pass {i - passes + 1}"
            for name in stats_names:
                if train:
                    items.append((f"{label}: {name}", now_t[name], now_j[name],
                                  F64_RTOL * max(scale(now_t[name]), 1e-300)))
                else:  # each side against itself: an eval pass must not move them at all
                    for side, before, now in (("torch", before_t, now_t), ("JAX", before_j, now_j)):
                        if not np.array_equal(before[name], now[name]):
                            raise Split(f"running statistics: {side} changed {name} in {label} (by up to "
                                        f"{np.abs(before[name] - now[name]).max():.3g}): eval mode must leave them")
    lines = first_split(items, "running statistics, float64")
    return [lines[len(stats_names) - 1], lines[-1], f"unchanged by {eval_passes} eval-mode passes on both sides"]


# ------------------------------------------------------------------------------------ loss, gradients


def grads_pair(proof: Proof, dtype, batch: int = 0, edge: bool = False):
    images, labels = proof.batch(batch)
    if edge:  # the port's own unusual batch, made from the real one (Port.edge_batch)
        images, labels = proof.port.edge_batch(images, labels)
    xt, xj = proof.inputs(images, dtype)
    model, variables, rest = proof.pair(dtype)
    masks = Masks(batch)
    loss_t, grads_t = proof.torch.loss_and_grads(model, xt, labels, Recorder(masks))
    with proof.x64(dtype):
        loss_j, grads_j, _ = proof.jax.loss_and_grads(rest, jnp_tree(variables), jnp_tree(xj),
                                                      jnp.asarray(labels), jax_hook(proof, Recorder(masks)))
        grads_j = jax_to_torch(proof.port, {"params": jax.tree.map(np.asarray, grads_j)})
    return (loss_t, grads_t), (float(loss_j), grads_j)


def check_loss_and_gradients(proof: Proof) -> list[str]:
    """Train mode, the same weights, batch and masks: the loss, then every parameter's gradient in
    backward order (the layer nearest the loss first: where backpropagation parts is the first split
    named), in float64 (both sides agree to 1e-9) and in float32 (JAX against the float64 reference,
    relative to max(the tensor's float64 gradient, 1e-3 of the largest): gradients that are truly
    zero come out as float noise on both sides, and are judged against that floor).

    A float32 split on one batch is asked again on NEAR_TIE_BATCHES more: a ReLU input within float32
    rounding of zero flips sign on one side and moves every gradient below it (issue #32: one input
    at 1.19e-6 in float64 moved ResNet-18's by 1e-3, on one batch of several), while a porting bug
    parts on every batch. It splits where it parts on batch 0 and on another batch too.

    Where the port gives an edge_batch (targets padded with ignore_index), the float64 comparison runs
    on it too, after batch 0's: a loss that counts what torch ignores splits there, at the loss."""
    lines, loss64, ref, floor, params = _float64_gradients(
        proof, "loss and gradients, float64, the same weights, batch and masks, backward order")
    if proof.port.edge_batch is not None:
        lines += _float64_gradients(
            proof, "loss and gradients, float64, on the port's edge_batch of batch 0, backward order", edge=True)[0]
    try:
        return lines + _float32_gradients(proof, 0, loss64, ref, floor, params)
    except Split as first:
        agreeing = []
        for batch in range(1, NEAR_TIE_BATCHES + 1):
            (loss_b, ref_b), _ = grads_pair(proof, np.float64, batch)
            try:
                _float32_gradients(proof, batch, loss_b, ref_b, gradient_floor(ref_b), params)
                agreeing.append(batch)
            except Split:
                raise Split(f"{first} (and on batch {batch} too: not a near-tie)") from None
        return lines + [f"float32 on batch 0 parted ({first}), a near-tie: batch "
                        f"{' and batch '.join(map(str, agreeing))} agree"]


def _float64_gradients(proof: Proof, what: str, edge: bool = False):
    """(lines, torch's loss, torch's gradients, their floors, the parameters in backward order): the loss,
    then every gradient, torch against JAX in float64 on batch 0 (or the port's edge_batch of it)."""
    (loss64, ref), (loss64_j, g64_j) = grads_pair(proof, np.float64, edge=edge)
    params = list(ref)[::-1]  # backward order: torch's parameters are registered in forward order
    floor = gradient_floor(ref)
    lines = first_split([("the loss", np.float64(loss64), np.float64(loss64_j), F64_RTOL * abs(loss64))]
                        + [(f"d loss / d {n}", ref[n], g64_j[n], F64_RTOL * floor[n]) for n in params], what)
    return lines, loss64, ref, floor, params


def gradient_floor(ref: dict) -> dict:
    """Each gradient's scale for its bound: its own float64 scale, or 1e-3 of the model's largest where
    it is (truly) ~0."""
    top = max(scale(g) for g in ref.values())
    return {name: max(scale(g), GRAD_FLOOR * top) for name, g in ref.items()}


def _float32_gradients(proof: Proof, batch: int, loss64: float, ref: dict, floor: dict, params: list) -> list[str]:
    (loss32, g32_t), (loss32_j, g32_j) = grads_pair(proof, np.float32, batch)
    items = [("the loss (float32)", np.float64(loss64), np.float64(loss32_j),
              max(F32_FACTOR * abs(loss32 - loss64), F32_FLOOR_ULPS * F32_ULP * abs(loss64)))]
    for n in params:
        t_err = np.abs(g32_t[n] - ref[n]).max()
        items.append((f"d loss / d {n} (float32)", ref[n], g32_j[n],
                      max(F32_FACTOR * t_err, F32_FLOOR_ULPS * F32_ULP * floor[n], 1e-4 * floor[n])))
    return first_split(items, f"gradients in float32 against the float64 reference, batch {batch}",
                       ("the float64 reference", "JAX float32"))


# ------------------------------------------------------------------------------------ optimizer, schedule


def run_length(proof: Proof) -> tuple[int, int, bool]:
    """(epochs, steps per epoch, whether the port declared the run's length): Port.epochs and
    Port.steps_per_epoch, else 4 epochs of the training data's batches."""
    spe = proof.port.steps_per_epoch or num_batches(len(proof.dataset.train_labels), proof.port.batch_size)
    return (proof.port.epochs or UNDECLARED_EPOCHS), spe, proof.port.epochs is not None


def _walk_torch_rates(proof: Proof, n: int, spe: int) -> np.ndarray:
    """(n, groups): the rate of each of torch's parameter groups in effect at each of n steps, its
    scheduler stepped as the script steps it (no gradients: optimizer.step() is a no-op that keeps torch
    from warning); constant where the script has no scheduler."""
    optimizer = proof.port.torch.optimizer(proof.torch.build(proof.seed))
    scheduler = proof.port.torch.make_scheduler(optimizer, spe)
    rates = np.empty((n, len(optimizer.param_groups)))
    for step in range(n):
        rates[step] = [group["lr"] for group in optimizer.param_groups]
        if scheduler is not None and proof.port.torch.steps_scheduler_after(step + 1, spe):
            optimizer.step()
            scheduler.step()
    return rates


def jax_rates(schedule, n: int) -> np.ndarray:
    """A JAX schedule at step counts 0..n-1, as optax calls it (an int32 count), in one vmapped call."""
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(schedule)(jnp.arange(n, dtype=jnp.int32)))


def _torch_rates(proof: Proof, spe: int) -> np.ndarray:
    """(steps, groups): torch's rates over the whole declared run (cached: the schedule check and the
    optimizer's probes share one walk)."""
    epochs, _, _ = run_length(proof)
    key = ("torch rates", epochs, spe)
    if key not in proof.cache:
        proof.cache[key] = _walk_torch_rates(proof, epochs * spe, spe)
    return proof.cache[key]


def rate_tolerance(proof: Proof, spe: int) -> tuple[float, str]:
    """(the bound on |torch rate - JAX rate|, what it is): relative 1e-12 of each rate for a float64
    schedule; where the JAX schedule returns float32 (optax's linear_schedule, exponential_decay and
    warmup_cosine_decay_schedule do, even under x64), 4 float32 ulps of the run's peak rate: optax
    computes them in float32 through intermediates as large as the peak (linear_schedule's
    (init - end) * (1 - t) + end: 4.3e-9 off at a warmup's 0.0033 on the way to 0.1, measured, 18
    ulps of the value but under one of the peak)."""
    if proof.port.jax.schedule is None:
        return 0.0, ""
    with jax.enable_x64(True):
        dtype = np.asarray(proof.port.jax.schedule(spe)(jnp.asarray(0, jnp.int32))).dtype
    if dtype != np.float32:
        return 0.0, ""
    peak = float(np.abs(_torch_rates(proof, spe)[:, 0]).max()) if proof.port.torch.scheduler else 0.0
    bound = F32_SCHEDULE_ULPS * F32_ULP * peak
    return bound, f" (the JAX schedule returns float32: judged to {F32_SCHEDULE_ULPS} float32 ulps of the peak rate, {bound:.3g})"


def check_schedule(proof: Proof) -> list[str]:
    """The learning rate in effect at every step of the whole declared run (Port.epochs x
    steps_per_epoch): torch's scheduler stepped as the script steps it (per epoch or per step)
    against the JAX schedule at each step count, in float64 (float32 rounding where the JAX schedule
    returns float32). Milliseconds even for thousands of steps."""
    side = proof.port.torch
    if side.scheduler is None and proof.port.jax.schedule is None:
        return ["no schedule on either side: the optimizer check covers the constant rate"]
    if side.scheduler is None or proof.port.jax.schedule is None:
        has = "torch" if side.scheduler else "JAX"
        raise Split(f"schedule: only the {has} side declares one (TorchSide.scheduler / JaxSide.schedule)")
    epochs, spe, declared = run_length(proof)
    n = epochs * spe
    absolute, how = rate_tolerance(proof, spe)
    lr_t = _torch_rates(proof, spe)[:, 0]
    lr_j = jax_rates(proof.port.jax.schedule(spe), n)
    diff = np.abs(lr_t - lr_j.astype(np.float64))
    bounds = np.maximum(SCHEDULE_RTOL * np.abs(lr_t), absolute)
    bad = np.flatnonzero(~(diff <= bounds))
    what = f"learning rate over {epochs} epochs of {spe} steps{how}"
    if bad.size:
        step = int(bad[0])
        raise Split(f"{what}: first split at step {step + 1} (epoch {step // spe + 1}): max |torch - JAX| = "
                    f"{diff[step]:.3g} > {bounds[step]:.3g}: torch {float(lr_t[step])!r}, JAX {float(lr_j[step])!r}"
                    + (f" (agreeing before it: steps 1-{step})" if step else " (the first value compared)"))
    note = [] if declared else [f"the run's length is not declared (Port.epochs): {epochs} epochs walked"]
    return [f"{what}: all {n} steps agree; step 1: {lr_t[0]:.6g}, step {n}: {lr_t[-1]:.6g}", *note]


def gradient_sequence(proof: Proof, dtype=np.float64) -> list[dict[str, np.ndarray]]:
    """Real gradients (three batches), then awkward ones: zeros, tiny, huge, sign-flipped, real again."""
    real = [grads_pair(proof, dtype, batch=b)[0][1] for b in range(3)]
    rng = np.random.default_rng(0)

    def scaled(g, factor):
        return {n: (v * factor).astype(dtype) for n, v in g.items()}

    zeros = scaled(real[0], 0.0)
    flips = {n: (v * rng.choice([-1.0, 1.0], v.shape)).astype(dtype) for n, v in real[2].items()}
    return [real[0], real[1], zeros, scaled(real[2], 1e-9), scaled(real[0], 1e-6), scaled(real[1], 1e8), flips,
            real[2], real[0]]


def _ratio(line: str) -> float:
    """'label: 1e-12 <= 2e-12' -> 0.5."""
    diff, bound = line.rsplit(": ", 1)[1].split(" <= ")
    return float(diff) / float(bound) if float(bound) else 0.0


def _flat_leaves(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """A params-shaped optimizer field as {"params/conv1/kernel": array}, leaving out optax.MaskedNode
    (the placeholders multi_transform and masked() put where another group's parameters are)."""
    out = {}
    for key, value in (tree.items() if isinstance(tree, dict) else ()):
        path = f"{prefix}{key}"
        if isinstance(value, optax.MaskedNode):
            continue
        if isinstance(value, dict):
            out.update(_flat_leaves(value, path + "/"))
        else:
            out[path] = np.asarray(value)
    return out


def optax_field(opt_state, field_name: str) -> dict[str, np.ndarray] | None:
    """Every `field_name` in the optimizer state (one per parameter group under multi_transform, issue
    #32), merged into one {JAX path: array}; None where the state has none."""
    found = optax.tree_utils.tree_get_all_with_path(opt_state, field_name)
    if not found:
        return None
    merged: dict[str, np.ndarray] = {}
    for _, value in found:
        if isinstance(value, dict):
            merged.update(_flat_leaves({"params": dict(value)}))
    return merged


def _torch_optimizer(proof: Proof, model, spe: int):
    """The script's optimizer and its scheduler, built as the script builds them (a LambdaLR warmup
    sets the first rate when it is built)."""
    optimizer = proof.port.torch.optimizer(model)
    return optimizer, proof.port.torch.make_scheduler(optimizer, spe)


def _update_items(proof: Proof, label: str, params: dict, before: dict, after_j: dict, before_j: dict,
                  rtol: float) -> list:
    items = []
    for n, p in params.items():
        du_t = p.detach().numpy() - before[n]  # each side's update to its own parameters: each
        du_j = after_j[n] - before_j[n]  # rounded its new value once, so an ulp of the value is allowed
        items.append((f"{label}, {n}: update", du_t, du_j, rtol * scale(du_t) + 2 * F64_ULP * scale(before[n])))
    return items


def check_optimizer(proof: Proof) -> list[str]:
    """From the same float64 parameters and the same gradients (real, zero, tiny, huge, sign-flipped),
    step after step, both optimizers with their schedules as the scripts build and step them: the
    same updates and the same optimizer state (torch's names -> optax's: OPTIMIZER_STATE; one field
    per parameter group under optax.multi_transform is merged). Then the schedule in use: at probe
    steps across the whole declared run, one update from each side's fresh state with its step
    count there, so an optimizer that ignores its schedule (a forgotten decay) splits where the
    rates part."""
    grads = gradient_sequence(proof)
    epochs, spe, _ = run_length(proof)
    model, variables, _ = proof.pair(np.float64)
    optimizer, scheduler = _torch_optimizer(proof, model, spe)
    params = dict(model.named_parameters())
    absolute, how = rate_tolerance(proof, spe)

    def rtol(rate: float) -> float:  # an update is linear in the rate: its relative error is the rate's
        return F64_RTOL + (absolute / abs(rate) if rate else 0.0)

    lines, slack = [], 0.0
    with jax.enable_x64(True):
        tx = proof.port.jax.optimizer(spe)
        jp = jax.tree.map(jnp.asarray, variables["params"])
        opt_state = tx.init(jp)
        for step, g in enumerate(grads, start=1):
            before = {n: p.detach().numpy().copy() for n, p in params.items()}
            before_j = jax_to_torch(proof.port, {"params": jax.tree.map(np.asarray, jp)})
            rate = optimizer.param_groups[0]["lr"]
            for n, p in params.items():
                p.grad = torch.from_numpy(g[n].copy())
            # the script's clipping, then the step; a global-norm clip leaves a port 1e-6 / norm of slack
            # (torch's formula divides by norm + 1e-6, optax.clip_by_global_norm by the norm: issue #33's
            # control), relative, in this step's update and in the optimizer's state from here on
            slack = max(slack, proof.torch.optimizer_step(model, optimizer))
            if scheduler is not None and proof.port.torch.steps_scheduler_after(step, spe):
                scheduler.step()
            gj = torch_to_jax(proof.port, g, np.float64)["params"]
            updates, opt_state = tx.update(jax.tree.map(jnp.asarray, gj), opt_state, jp)
            jp = optax.apply_updates(jp, updates)
            after_j = jax_to_torch(proof.port, {"params": jax.tree.map(np.asarray, jp)})
            items = _update_items(proof, f"step {step}", params, before, after_j, before_j, rtol(rate) + 2 * slack)
            fields = {}
            for n, p in params.items():
                for key, value in optimizer.state[p].items():
                    if key not in OPTIMIZER_STATE or not torch.is_tensor(value) or value.shape != p.shape:
                        continue
                    if key not in fields:
                        fields[key] = optax_field(opt_state, OPTIMIZER_STATE[key])
                    if fields[key] is None:
                        raise Split(f"optimizer: torch keeps {key} and the JAX optimizer state has no "
                                    f"{OPTIMIZER_STATE[key]!r}: not the same optimizer")
                    missing = [path for path in paths(proof.port, n) if path not in fields[key]]
                    if missing:
                        raise Split(f"optimizer: torch keeps {key} for {n}; the JAX optimizer state's "
                                    f"{OPTIMIZER_STATE[key]!r} has nothing for {missing[0]} (another parameter group?)")
                    mapped_value = to_torch_value(proof.port, n, fields[key])
                    items.append((f"step {step}, {n}: {key}", value.numpy(), mapped_value,
                                  (F64_RTOL + 2 * slack) * max(scale(value.numpy()), 1e-300)))
            step_lines = first_split(items, "optimizer, float64, the same gradients" + how)
            lines.append(step_lines.closest)
        probes = _schedule_in_use(proof, grads[0], epochs, spe, tx, rtol, how)
    return [f"{len(grads)} steps agree; the closest to its bound: {max(lines, key=_ratio)}", *probes]


def _probe_steps(epochs: int, spe: int, limit: int = 6) -> list[int]:
    """0-based steps to probe: each epoch's first step (at most `limit`, evenly), its last, and the
    run's last."""
    starts = [e * spe for e in range(epochs)]
    if len(starts) > limit:
        starts = [starts[round(i * (len(starts) - 1) / (limit - 1))] for i in range(limit)]
    return sorted({*starts, spe - 1, epochs * spe - 1} - {0})


def _with_counts(opt_state, count: int):
    """The optimizer state with every step counter (optax keeps them as int32 scalars: the schedule's,
    Adam's bias correction) set to `count`."""
    def set_count(leaf):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.integer) and jnp.ndim(leaf) == 0:
            return jnp.full_like(leaf, count)
        return leaf
    return jax.tree.map(set_count, opt_state)


def _schedule_in_use(proof: Proof, g: dict, epochs: int, spe: int, tx, rtol, how: str) -> list[str]:
    """One update at each probe step s of the whole run, from fresh optimizer state whose step count is
    s on both sides: torch's optimizer with each group's rate at s from the script's scheduler (the
    walk the schedule check made: schedulers that change only `lr`), its state's `step` set to s
    (optimizer.state); optax's int32 counters set to s. Each side's schedule at s is what the update uses."""
    model, variables, _ = proof.pair(np.float64)
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    rates = _torch_rates(proof, spe)
    gj = jax.tree.map(jnp.asarray, torch_to_jax(proof.port, g, np.float64)["params"])
    jp = jax.tree.map(jnp.asarray, variables["params"])
    before_j = jax_to_torch(proof.port, {"params": jax.tree.map(np.asarray, jp)})
    params = dict(model.named_parameters())
    lines = []
    for s in _probe_steps(epochs, spe):
        optimizer = proof.port.torch.optimizer(model)
        for group, rate in zip(optimizer.param_groups, rates[s]):
            group["lr"] = float(rate)
        for n, p in params.items():  # a first step creates the state; then it is reset to step s
            p.grad = torch.zeros_like(p)
        optimizer.step()
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(reference[n])
                for key, value in optimizer.state[p].items():
                    if key == "step":
                        value.fill_(s) if torch.is_tensor(value) else optimizer.state[p].__setitem__(key, s)
                    elif torch.is_tensor(value) and value.shape == p.shape:
                        value.zero_()
        before = {n: p.detach().numpy().copy() for n, p in params.items()}
        for n, p in params.items():
            p.grad = torch.from_numpy(g[n].copy())
        slack = proof.torch.optimizer_step(model, optimizer)
        updates, _ = tx.update(gj, _with_counts(tx.init(jp), s), jp)
        after_j = jax_to_torch(proof.port, {"params": jax.tree.map(np.asarray, optax.apply_updates(jp, updates))})
        label = f"step {s + 1} (epoch {s // spe + 1})"
        first_split(_update_items(proof, label, params, before, after_j, before_j, rtol(rates[s, 0]) + 2 * slack),
                    f"optimizer with its schedule, from fresh state at step {s + 1}, torch's rate {rates[s, 0]:.6g}{how}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(reference[n])
        lines.append(label)
    return [f"the schedule in use: one update at each of {len(lines)} steps across {epochs} epochs agrees "
            f"({', '.join(lines[:3])}{', ...' if len(lines) > 3 else ''})"] if lines else []


# ------------------------------------------------------------------------------------ training


def _batches(proof: Proof):
    return [proof.batch(i) for i in range(proof.trajectory_epochs * proof.steps_per_epoch)]


def trajectory(proof: Proof, dtype, nudge: float = 0.0, side: str = "both", draw: int = 0):
    """Both sides' own training steps from torch's seeded weights (optionally nudged by 1 +- nudge,
    the signs drawn from `draw`), the same batches and masks, the torch scheduler stepped as the
    script steps it: per step the loss, and every variable after the step (torch names, torch layout).
    Kept in proof.cache: the float64 check, the float32 drift and the cross-evaluation share the runs
    (each is deterministic); side "torch" reuses the torch half of a run of both."""
    key = ("trajectory", np.dtype(dtype).name, nudge, draw)
    if side == "torch" and key + ("both",) in proof.cache:
        return proof.cache[key + ("both",)][0], []
    if key + (side,) not in proof.cache:
        proof.cache[key + (side,)] = _trajectory(proof, dtype, nudge, side, draw)
    return proof.cache[key + (side,)]


def _jax_float32_rates(proof: Proof, spe: int, n: int) -> np.ndarray | None:
    """The JAX schedule's rates over n steps where it returns float32 (optax's linear_schedule,
    cosine_decay_schedule, join_schedules), else None. The schedule check judges those rates to
    float32 rounding; the trajectories then step torch at them, since a float32 rate is off by up to
    1.7e-6 relative (nanoGPT's warmup through join_schedules, measured) and a float64 trajectory
    held to 1e-9 would call that correct port wrong at step 1 (issue #33's control)."""
    if proof.port.jax.schedule is None or proof.port.torch.scheduler is None or not rate_tolerance(proof, spe)[0]:
        return None
    return jax_rates(proof.port.jax.schedule(spe), n).astype(np.float64)


@contextlib.contextmanager
def _torch_at_rate(optimizer, rate: float | None):
    """Torch's optimizer step at `rate` for its first group (the others scaled alike), its own rates
    put back after it: schedulers that chain (StepLR, ExponentialLR) read the group's rate."""
    if rate is None or not optimizer.param_groups[0]["lr"]:
        yield
        return
    own = [group["lr"] for group in optimizer.param_groups]
    factor = rate / float(own[0])
    for group, lr in zip(optimizer.param_groups, own):
        group["lr"] = lr * factor
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, own):
            group["lr"] = lr


def _trajectory(proof: Proof, dtype, nudge: float, side: str, draw: int):
    spe = proof.steps_per_epoch
    model = proof.torch.build(proof.seed, torch.float64 if dtype == np.float64 else torch.float32)
    rng = np.random.default_rng(draw)
    if nudge:  # each weight by an ulp up or down at random (a uniform scale would vanish in a BatchNorm)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + nudge * torch.from_numpy(rng.choice([-1.0, 1.0], tuple(p.shape))).to(p.dtype))
    _, rest = proof.jax_init(proof.seed)
    variables = torch_to_jax(proof.port, proof.torch.state(model), dtype)
    optimizer = proof.port.torch.optimizer(model)
    scheduler = proof.port.torch.make_scheduler(optimizer, spe)
    rates = _jax_float32_rates(proof, spe, len(_batches(proof)))
    if nudge and rates is not None:
        # and each float32 rate by a float32 ulp of the run's peak: XLA rounds a float32 schedule apart
        # where it compiles it inside the step and where the kit evaluates it alone (nanoGPT's get_lr
        # through join_schedules: 50 of 2,000 rates, up to 0.73 such ulps, 1.3e-6 of the rate; measured),
        # so torch cannot step at the step's own rates, and its sensitivity must count that rounding
        peak = rate_tolerance(proof, spe)[0] / F32_SCHEDULE_ULPS
        rates = rates + peak * rng.choice([-1.0, 1.0], len(rates))
    out_t, out_j = [], []
    with proof.x64(dtype):
        tx = proof.port.jax.optimizer(spe)
        jv = jax.tree.map(jnp.asarray, variables)
        opt_state = tx.init(jv["params"])
        for step, (images, labels) in enumerate(_batches(proof), start=1):
            xt, xj = proof.inputs(images, dtype)
            if nudge:  # and each input: exact ties (a flat background's equal pixels) break as rounding breaks them
                xt = jax.tree.map(lambda a: a * (1 + nudge * rng.choice([-1.0, 1.0], a.shape)).astype(dtype)
                                  if np.issubdtype(a.dtype, np.floating) else a, xt)
            masks = Masks(1000 + step)
            if side in ("both", "torch"):
                # nudged: also clipped as a port without torch's 1e-6 clips (TorchModel.optimizer_step)
                with _torch_at_rate(optimizer, None if rates is None else rates[step - 1]):
                    loss_t = proof.torch.step(model, optimizer, xt, labels, Recorder(masks), eps_free=bool(nudge))
                if scheduler is not None and proof.port.torch.steps_scheduler_after(step, spe):
                    scheduler.step()
                out_t.append((loss_t, proof.torch.state(model)))
            if side in ("both", "jax"):
                loss_j, jv, opt_state = proof.jax.step(rest, jv, tx, opt_state, jnp_tree(xj), jnp.asarray(labels),
                                                       jax_hook(proof, Recorder(masks)))
                out_j.append((float(loss_j), jax_to_torch(proof.port, jax.tree.map(np.asarray, jv))))
    return out_t, out_j


def check_trajectory_float64(proof: Proof) -> list[str]:
    """Steps of both sides' training from the same weights on the same batches and masks, across epoch
    boundaries, in float64: the loss of every step and every variable after it, within 1e-9, or, where
    training itself amplifies rounding more, within TRAJECTORY_FACTOR times torch's own float64
    sensitivity: torch against torch with its weights and inputs nudged by one float64 ulp (and where
    the JAX schedule is float32, its rates by one float32 ulp of the peak rate). On the small examples
    that sensitivity stays ~1e-15 and the bound is 1e-9; ResNet-18 at lr 0.1, with
    layer4's BatchNorm over a 1x1 map of 16 samples, amplifies 1e-16 to ~1e-7 relative in 11 steps
    (measured), the same on either side.

    One nudged run's difference is one draw, and a scalar's can fall near zero by chance: ResNet-18's
    loss at step 11 came out 2.5e-9, 9.3e-8 and 2.7e-8 from torch's in three nudged runs while the whole
    state's relative divergence was 1.7e-9 to 2.5e-9 in all three (measured, Intel Xeon, 2 cores), and JAX's
    9.0e-8 failed the correct port against the first draw (bound 16 x 2.5e-9) on that CPU, and passed on
    another. So the loss's sensitivity is also read off the state (the loss times the state's relative
    divergence), and where JAX leaves the first run's bounds the split is asked again over
    TRAJECTORY_DRAWS nudged runs (other signs), each item bounded by the largest: a wrong port is wrong
    against every draw."""
    out_t, out_j = trajectory(proof, np.float64)
    return _over_nudged_draws(
        lambda nudged: _trajectory_float64(proof, out_t, out_j, nudged),
        lambda d: trajectory(proof, np.float64, nudge=F64_ULP, side="torch", draw=d)[0], TRAJECTORY_DRAWS,
        "JAX left the bounds of torch's first nudged run and is within those of {runs}")


def _over_nudged_draws(judge, nudged_run, draws: int, retried: str) -> list[str]:
    """judge(nudged runs) against torch's first nudged run; where JAX leaves its bounds (Split), again
    against `draws` of them, and the `retried` line says so. Costs nothing on a passing port."""
    nudged = [nudged_run(0)]
    try:
        return judge(nudged)
    except Split:
        pass
    nudged += [nudged_run(d) for d in range(1, draws)]
    return judge(nudged) + [retried.format(runs=len(nudged))]


def _trajectory_float64(proof: Proof, out_t, out_j, nudged: list) -> list[str]:
    names = list(proof.port.weights)
    items = []
    for step, ((loss_t, state_t), (loss_j, state_j), *others) in enumerate(zip(out_t, out_j, *nudged), start=1):
        t = joined(state_t, names)
        own_loss = max(max(abs(loss_t - loss_n), abs(loss_t) * rel_l2(t, joined(state_n, names)))
                       for loss_n, state_n in others)
        items.append((f"step {step}: the loss", np.float64(loss_t), np.float64(loss_j),
                      max(F64_RTOL * abs(loss_t), TRAJECTORY_FACTOR * own_loss)))
        for name in names:
            own = max((float(np.abs(np.asarray(state_t[name], np.float64) - state_n[name]).max())
                       for _, state_n in others), default=0.0) if state_t[name].size else 0
            items.append((f"step {step}: {name}", state_t[name], state_j[name],
                          max(F64_RTOL * max(scale(state_t[name]), 1e-300), TRAJECTORY_FACTOR * own)))
    at = _jax_float32_rates(proof, proof.steps_per_epoch, 0) is not None
    runs = f", over {len(nudged)} nudged runs" if len(nudged) > 1 else ""
    lines = first_split(items, f"float64 training, {proof.steps_per_epoch} steps per epoch (bound: 1e-9, or "
                        f"{TRAJECTORY_FACTOR}x torch's own sensitivity to a one-ulp nudge{runs}"
                        + ("; torch at the JAX schedule's float32 rates, judged by the schedule check, and nudged "
                           "by a float32 ulp of the peak rate)" if at else ")"))
    return [f"{len(out_t)} steps agree; the closest to its bound: {lines.closest}"]


def check_float32_drift(proof: Proof, factor: float = 8.0) -> list[str]:
    """The same steps in float32: JAX's departure from the float64 trajectory stays within `factor` times
    torch's float32 drift, measured two ways and the larger taken: torch float32 (plain and nudged)
    against torch float64, and torch against itself with its weights and inputs nudged by one float32
    ulp. Over the whole model's variables (relative L2) and the loss. Whole-model, not per tensor: a tensor whose values
    come from sums that cancel (a BatchNorm's bias) is 10% off in float32 on either side while the model
    is not; the float64 trajectory judges every tensor. Why both baselines (bn_net, measured): torch's
    float32 left the float64 path by 1.2e-5 at step 3 through a max-pool near-tie while the nudged torch
    stayed within 1.2e-7 of it, taking the same turn.

    Where JAX leaves that envelope, the split is asked again of NEAR_TIE_DRAWS more nudged torch runs
    (other signs): float32 rounding sends a deep net down one of a few branches at a near-tie, by chance.
    ResNet-18 at lr 0.1 (measured, AVX2 CPU): at step 2, five nudged runs of each side came out 1.7e-6,
    7.2e-5 or 1.4e-4 from float64, torch's in all three places and JAX's in two, so one torch run against
    one JAX run failed a correct port or passed it by the CPU it ran on. A port whose float32 is worse
    than torch's is worse on every branch."""
    reference, _ = trajectory(proof, np.float64, side="torch")
    out_t, out_j = trajectory(proof, np.float32)
    return _over_nudged_draws(
        lambda nudged: _float32_drift(proof, reference, out_t, out_j, nudged, factor),
        lambda d: trajectory(proof, np.float32, nudge=F32_ULP, side="torch", draw=d)[0], NEAR_TIE_DRAWS + 1,
        "a near-tie: JAX's float32 left the envelope of torch's first nudged run and is within that of {runs} "
        "(torch's float32 takes the same branches)")


def _float32_drift(proof: Proof, reference, out_t, out_j, nudged: list, factor: float) -> list[str]:
    names = list(proof.port.weights)
    envelope, loss_envelope = 4 * F32_ULP, 0.0
    runs = f" over {len(nudged)} nudged runs" if len(nudged) > 1 else ""
    lines = []
    for step, ((loss_r, ref), (loss_t, state_t), (loss_j, state_j), *others) in enumerate(
            zip(reference, out_t, out_j, *nudged), 1):
        r, t = joined(ref, names), joined(state_t, names)
        envelope = max(envelope, rel_l2(r, t))
        loss_envelope = max(loss_envelope, abs(loss_t - loss_r))
        for loss_n, state_n in others:
            n = joined(state_n, names)
            envelope = max(envelope, rel_l2(t, n), rel_l2(r, n))
            loss_envelope = max(loss_envelope, abs(loss_t - loss_n), abs(loss_n - loss_r))
        loss_envelope = max(loss_envelope, envelope * abs(loss_r))
        drift, loss_gap = rel_l2(r, joined(state_j, names)), abs(loss_j - loss_r)
        if drift > factor * envelope or loss_gap > factor * loss_envelope:
            name = max(names, key=lambda n: float(np.linalg.norm(np.asarray(ref[n], np.float64) - state_j[n])))
            _, index, rv, jv = worst(ref[name], state_j[name])
            raise Split(f"float32 training: first split at step {step}: JAX float32 is {drift:.3g} from the float64 "
                        f"trajectory (relative L2) where torch's float32 drift{runs} is {envelope:.3g} (bound "
                        f"{factor:g}x); the loss {loss_gap:.3g} from float64 (torch's drift {loss_envelope:.3g}); "
                        f"furthest: {name} at {list(index)}: float64 {rv!r}, JAX float32 {jv!r}")
        lines.append(f"step {step}: JAX float32 {drift:.3g} from float64, torch's drift{runs} {envelope:.3g}; "
                     f"loss {loss_gap:.3g} (torch {loss_envelope:.3g})")
    return [lines[0], lines[-1]]


def joined(state: dict, names: list[str]) -> np.ndarray:
    return np.concatenate([np.asarray(state[n], np.float64).ravel() for n in names])


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-300))


def check_cross_eval(proof: Proof, n_test: int = 1000) -> list[str]:
    """Weights trained on one side score the same on the other (eval mode, float32, 1,000 test samples):
    the same mean loss (1e-5 relative) and predictions, the argmax of the output's last axis (but for
    near-ties of the top two scores)."""
    out_t, out_j = trajectory(proof, np.float32)
    images, labels = take(proof.dataset.test_inputs, slice(n_test)), proof.dataset.test_labels[:n_test].astype(np.int64)
    xt, xj = proof.inputs(images, np.float32)
    lines = []
    _, rest = proof.jax_init(proof.seed)
    for trained_on, state in (("torch", out_t[-1][1]), ("JAX", out_j[-1][1])):
        model = proof.torch.build(proof.seed)
        proof.torch.load(model, {k: v for k, v in state.items() if mapped(k)})
        with torch.no_grad():
            output_t = proof.torch.forward(model, xt, train=False)
            loss_t = float(proof.port.torch.loss(output_t, torch.from_numpy(labels)))
        variables = torch_to_jax(proof.port, state, np.float32)
        output_j, _ = proof.jax.run(rest, jnp_tree(variables), jnp_tree(xj), False)
        loss_j = float(proof.port.jax.loss(output_j, jnp.asarray(labels)))
        logits_t = logits_of(to_numpy(output_t), proof.port.torch)
        logits_j = proof.port.to_torch_layout(logits_of(jax.tree.map(np.asarray, output_j), proof.port.jax))
        top2 = np.sort(logits_t, axis=-1)[..., -2:]
        clear = (top2[..., 1] - top2[..., 0]) > 1e-4 * np.abs(top2).max()
        disagree = int((logits_t.argmax(-1) != logits_j.argmax(-1))[clear].sum())
        if abs(loss_t - loss_j) > 1e-5 * abs(loss_t) or disagree:
            raise Split(f"cross-evaluation of weights trained on {trained_on}: test loss torch {loss_t!r}, JAX "
                        f"{loss_j!r}; {disagree} of {int(clear.sum())} clear predictions differ")
        counted = labels >= 0  # an ignore_index (-1, -100) is no prediction to score
        accuracy = (logits_t.argmax(-1) == labels)[counted].mean()
        lines.append(f"trained on {trained_on}: test loss {loss_t:.6f} vs {loss_j:.6f}, {accuracy:.2%} accuracy on both")
    return lines


# The order a proof runs them in: quick structural checks, then float64 math, then training.
CHECKS = [
    ("weight_map", check_weight_map),
    ("parameter_counts", check_parameter_counts),
    ("inputs", check_inputs),
    ("init", check_init),
    ("schedule", check_schedule),
    ("dropout", check_dropout),
    ("forward_eval", check_forward_eval),
    ("forward_train", check_forward_train),
    ("float32_forward", check_float32_forward),
    ("loss_and_gradients", check_loss_and_gradients),
    ("running_statistics", check_running_statistics),
    ("optimizer", check_optimizer),
    ("trajectory_float64", check_trajectory_float64),
    ("float32_drift", check_float32_drift),
    ("cross_eval", check_cross_eval),
]


def first_failure(proof: Proof, names: list[str] | None = None) -> tuple[str, str] | None:
    """Run the checks in order (or those named) until one fails: (its name, where it split), or None.
    A port that cannot even run a check (a shape error inside the model, say) fails it with that error."""
    for name, check in CHECKS:
        if names is None or name in names:
            try:
                check(proof)
            except Split as e:
                return name, str(e)
            except Exception as e:  # noqa: BLE001 - the port broke the check itself: that is its failure
                return name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None
