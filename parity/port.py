"""A port, described once: what the kit needs to know about a PyTorch model and its JAX twin.

Framework-neutral: the fields hold the user's own callables (factories, losses, optimizers), and
nothing here imports torch or jax. Every check in parity.checks reads the port from this one object.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# A weight map entry: the JAX side's path ("params/conv1/kernel", "batch_stats/bn1/mean") and how a
# torch tensor becomes it: "conv" (OIHW -> HWIO), "linear" ((out, in) -> (in, out)), "same", or a Layout
# of one's own; or a Split, one torch tensor held as several JAX tensors.
LAYOUTS = ("conv", "linear", "same")


@dataclass(frozen=True)
class Layout:
    """A layout of one's own: to_jax(torch's array) -> the JAX array, to_torch its inverse (NumPy). E.g.
    a Linear's weight as Flax's LinearGeneral kernel (in, heads, head size):
    Layout("heads", lambda w: w.T.reshape(E, H, D), lambda k: k.reshape(E, H * D).T)."""

    name: str
    to_jax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Split:
    """One torch tensor held as several JAX tensors: cut into len(parts) equal pieces along `axis` (in
    torch's layout), each piece mapped by its (path, layout). nn.MultiheadAttention's in_proj_weight
    (3E, E), q then k then v rows, as nnx.MultiHeadAttention's query, key and value kernels."""

    parts: tuple
    axis: int = 0


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    """Torch's activations and inputs (N, C, H, W) as JAX's (N, H, W, C); other ranks as they are."""
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


@dataclass(frozen=True)
class TorchSide:
    """The reference. model(seed) builds it (on the CPU, float32); loss(output, labels) is the batch's
    mean loss as the training script computes it; optimizer(model) and scheduler(optimizer) are the
    script's, or scheduler(optimizer, steps_per_epoch) for a schedule the script sizes by its loader
    (a per-batch CosineAnnealingLR(T_max=epochs * len(loader))): the kit's short trajectories then
    get the same schedule in their own epochs; scheduler_interval says when the script calls
    scheduler.step(): "epoch" or "step"."""

    model: Callable[[int], Any]
    loss: Callable[[Any, Any], Any]
    optimizer: Callable[[Any], Any]
    scheduler: Callable[..., Any] | None = None
    scheduler_interval: str = "epoch"
    # What the script does between loss.backward() and optimizer.step(), on the model's gradients:
    # e.g. lambda model: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0). Run wherever the kit
    # steps torch's optimizer (the optimizer check, the trajectories, the training loop).
    before_step: Callable[[Any], Any] | None = None
    # The script's own training step, where the kit's (zero_grad, forward, loss, backward, before_step,
    # step) is not it: step(model, optimizer, x, y) -> the batch's loss, x the model's input (a tensor, or
    # a tuple of them as the model takes them), y the labels. The kit runs it in the trajectories and the
    # training loop, its dropout masks given through the model's modules as before.
    step: Callable[[Any, Any, Any, Any], Any] | None = None
    # The class scores of an output in the labels' layout (the labels' shape, then the classes), where the
    # output's first array is not: word_language_model's log-probabilities are (time * batch, classes),
    # time first, for labels (batch, time). None: the output, or its first array. The kit's accuracy and
    # cross-evaluation take the argmax of their last axis.
    scores: Callable[[Any], Any] | None = None

    def make_scheduler(self, optimizer, steps_per_epoch: int):
        """The script's scheduler on this optimizer, told the steps per epoch where it takes them; None
        where the script has none."""
        if self.scheduler is None:
            return None
        try:
            takes = len(inspect.signature(self.scheduler).parameters) >= 2
        except (TypeError, ValueError):  # a builtin or a class without a signature: one argument
            takes = False
        return self.scheduler(optimizer, steps_per_epoch) if takes else self.scheduler(optimizer)

    def optimizer_step(self, model, optimizer) -> None:
        """What the script does once the gradients are in: before_step (clipping), then optimizer.step()."""
        if self.before_step is not None:
            self.before_step(model)
        optimizer.step()

    def steps_scheduler_after(self, step: int, steps_per_epoch: int) -> bool:
        """Whether the script calls scheduler.step() after this (1-based) step."""
        return self.scheduler_interval == "step" or step % steps_per_epoch == 0


@dataclass(frozen=True)
class JaxSide:
    """The port. api is "nnx" (model(seed) returns an nnx.Module) or "linen" (model(seed) returns
    (module, variables); the module is called as module.apply(variables, x, **{train_kwarg: train}),
    or without a mode argument where train_kwarg is None); loss(output,
    labels) is the batch's mean loss; optimizer(steps_per_epoch) returns the optax transformation,
    its learning-rate schedule counted in steps; schedule(steps_per_epoch), if the optimizer has one,
    returns that schedule (step count -> learning rate) so the kit can check it step by step."""

    api: str
    model: Callable[[int], Any]
    loss: Callable[[Any, Any], Any]
    optimizer: Callable[[int], Any]
    schedule: Callable[[int], Callable[[Any], Any]] | None = None
    train_kwarg: str | None = "train"
    # The port's own training step, which the trajectories then run instead of the kit's (loss, grad,
    # tx.update, apply): for "nnx", train_step(model, optimizer, x, y) -> loss, optimizer an
    # nnx.Optimizer(model, tx, wrt=nnx.Param) over the port's optax transformation, the model in train
    # mode; for "linen", train_step(state, x, y) -> (state, loss), state a flax TrainState (apply_fn,
    # params, tx, opt_state; the port's dropout keys are its own). It may be jitted: the kit runs it with
    # jit off, so that it can record layers and give dropout its masks.
    train_step: Callable[..., Any] | None = None
    # As TorchSide.scores, on the JAX output.
    scores: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Port:
    """Both sides, and how they correspond.

    weights: torch state_dict name -> (JAX path, layout) for every tensor either side holds (torch's
        num_batches_tracked may be left out: JAX's BatchNorm keeps no count; so may a constant buffer,
        the same for every seed and unchanged by training: parity.checks.torch_constants). Checked by shape. Tied
        tensors (nanoGPT's lm_head.weight is transformer.wte.weight) are two names sent to one JAX path;
        the weight-map check says where torch ties and JAX does not, or the reverse.
    layers: torch module name -> JAX module path, where they differ (same names need no entry; an entry
        whose torch name the torch forward never calls gives way to the same name: Proof.torch_layer). The
        dropout inside F.scaled_dot_product_attention is torch's "<calling module>.scaled_dot_product_attention
        .dropout"; the one inside a Flax attention module at path P is JAX's "P.scaled_dot_product_attention
        .dropout" (parity.checks.attention_dropout_name).
    torch_inputs / jax_inputs: the training script's input transform on each side, from a batch of the
        data's raw inputs to the model's arguments: one array (Fashion-MNIST's uint8 (N, 28, 28) images
        -> float32 (N, 1, 28, 28) for torch, (N, 28, 28, 1) for JAX), or a tuple of them, passed as
        positional arguments (nanoGPT's model(idx, targets)), tuples inside staying tuples (an LSTM's
        model(data, (h, c))). Floating-point arrays are cast to each check's precision; integer ones
        (token ids) are kept.
    to_jax_layout / to_torch_layout: how torch's activations map to JAX's (NCHW <-> NHWC by default).
    batch_size: the training script's batch (the checks' batches are this size).
    epochs, steps_per_epoch: the length of the training run the port reproduces. The schedule and
        the optimizer's use of it are checked over the whole of it (a decay at epoch 6 is seen only
        by a walk that reaches epoch 6). steps_per_epoch None: the training data's batches
        (ceil(samples / batch_size)); epochs None: 4, and the checks say the run was not declared.
    edge_batch: (raw inputs, labels) -> (raw inputs, labels): a real batch made into one that the
        training script's loss must handle but the proof's data never holds (targets padded with
        torch's ignore_index, masked positions). The loss and every gradient are then compared on it
        too, in float64: nanoGPT's character windows hold no -1 target, so without it a port that
        averages over the ignored targets passes.
    """

    name: str
    torch: TorchSide
    jax: JaxSide
    weights: dict[str, tuple[str, str]]
    torch_inputs: Callable[[np.ndarray], np.ndarray]
    jax_inputs: Callable[[np.ndarray], np.ndarray]
    layers: dict[str, str] = field(default_factory=dict)
    batch_size: int = 64
    epochs: int | None = None
    steps_per_epoch: int | None = None
    to_jax_layout: Callable[[np.ndarray], np.ndarray] = nchw_to_nhwc
    to_torch_layout: Callable[[np.ndarray], np.ndarray] = nhwc_to_nchw
    edge_batch: Callable[[Any, np.ndarray], tuple[Any, np.ndarray]] | None = None

    def __post_init__(self):
        pairs = [(name, pair) for name, entry in self.weights.items()
                 for pair in (entry.parts if isinstance(entry, Split) else (entry,))]
        bad = {name: pair[1] for name, pair in pairs if not isinstance(pair[1], Layout) and pair[1] not in LAYOUTS}
        if bad:
            raise ValueError(f"{self.name}: unknown layouts {bad}; use one of {LAYOUTS} or a parity.Layout")
        if self.jax.api not in ("nnx", "linen"):
            raise ValueError(f"{self.name}: JaxSide.api is {self.jax.api!r}; use 'nnx' or 'linen'")
        if self.torch.scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"{self.name}: scheduler_interval is {self.torch.scheduler_interval!r}; "
                             "use 'epoch' or 'step'")

    def torch_layer(self, jax_name: str) -> str:
        """The torch module name of a JAX module path (the inverse of `layers`)."""
        return next((t for t, j in self.layers.items() if j == jax_name), jax_name)


def normalize(mean: float, std: float, layout: str) -> Callable[[np.ndarray], np.ndarray]:
    """torchvision's ToTensor() then Normalize((mean,), (std,)), as a NumPy function: uint8 (N, 28, 28)
    -> float32 (N, 1, 28, 28) for "NCHW", (N, 28, 28, 1) for "NHWC"."""
    def transform(images: np.ndarray) -> np.ndarray:
        x = (images.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)
        return x[:, None] if layout == "NCHW" else x[..., None]

    return transform


def same_layout(a: np.ndarray) -> np.ndarray:
    """Port.to_jax_layout / to_torch_layout for a model whose activations are laid out alike on both
    sides (a transformer's (batch, time, features), and its attention weights (batch, heads, T, T),
    which the default NCHW <-> NHWC would transpose)."""
    return a


def same_names(layers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The weight map of a port whose layers have the same names on both sides. layers: torch module
    name -> kind, one of "conv" (Conv2d -> kernel HWIO, and its bias), "linear" (Linear -> kernel
    (in, out), and its bias), "conv-no-bias" / "linear-no-bias" (bias=False), "batchnorm" (BatchNorm
    weight/bias -> scale/bias, running_mean/var -> the batch_stats collection's mean/var), "layernorm" /
    "layernorm-no-bias" (LayerNorm weight/bias -> scale/bias), "embedding" (Embedding weight ->
    embedding, (num, features) on both sides). Nested
    names (torchvision's "layer1.0.conv1") become nested paths ("params/layer1/0/conv1/kernel"), as
    NNX's nnx.List and Linen's submodules nest them."""
    weights = {}
    for layer, kind in layers.items():
        path = layer.replace(".", "/")
        if kind == "batchnorm":
            weights.update({f"{layer}.weight": (f"params/{path}/scale", "same"),
                            f"{layer}.bias": (f"params/{path}/bias", "same"),
                            f"{layer}.running_mean": (f"batch_stats/{path}/mean", "same"),
                            f"{layer}.running_var": (f"batch_stats/{path}/var", "same")})
        elif kind in ("layernorm", "layernorm-no-bias"):
            weights[f"{layer}.weight"] = (f"params/{path}/scale", "same")
            if kind == "layernorm":
                weights[f"{layer}.bias"] = (f"params/{path}/bias", "same")
        elif kind == "embedding":
            weights[f"{layer}.weight"] = (f"params/{path}/embedding", "same")
        elif kind.removesuffix("-no-bias") in ("conv", "linear"):
            weights[f"{layer}.weight"] = (f"params/{path}/kernel", kind.removesuffix("-no-bias"))
            if not kind.endswith("-no-bias"):
                weights[f"{layer}.bias"] = (f"params/{path}/bias", "same")
        else:
            raise ValueError(f"{layer}: unknown kind {kind!r}; use conv, linear, conv-no-bias, linear-no-bias, "
                             "batchnorm, layernorm, layernorm-no-bias or embedding")
    return weights
