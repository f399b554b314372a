"""The training math of the NNX twin: the step a reader copies (nnx.Optimizer, nnx.value_and_grad),
its nnx.jit form for a loop of one call per batch (`jit_train_step`), and the same step in functional
form for the trainer's hot loop: nnx.merge, the step, nnx.state, inside one jax.jit with a lax.scan of
k steps, as Flax's performance guide shows. The step itself is undecorated, so the fused loop traces
it once inside its own jit (no jit nested in a jit), as Flax's functional-loop guide writes it.

Why the trainer does not call `jit_train_step` once per batch: `python -m benchmarks.nnx_loop` takes
the reader's loop to the fused steps one change at a time (docs/performance.md has the figures and
what each change is worth).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from flax_impl.steps import accumulate, check_same_tree, gather, make_optimizer, map_test_batches, masked_loss_sum
from flax_impl.variants import build_nnx_model


def train_step(model: nnx.Module, optimizer: nnx.Optimizer, batch: dict) -> dict:
    """One Adam step, in place on the model and the optimizer; the metrics stay on the device.

    The loss is the mean over the batch's real samples (labels < 0 are padding).
    """

    def loss_fn(model):
        logits = model(batch["images"])
        loss_sum, correct, valid = masked_loss_sum(logits, batch["labels"])
        return loss_sum / valid.sum(), (loss_sum, correct)

    (_, (loss_sum, correct)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return {"loss_sum": loss_sum, "correct": correct}  # accuracy from the same forward pass as the loss


# The step as a reader runs it, one compiled call per batch: `jit_train_step(model, optimizer, batch)`.
jit_train_step = nnx.jit(train_step)


def eval_step(model: nnx.Module, batch: dict) -> dict:
    """Summed loss, correct count and predictions of a batch; labels < 0 mark padding. It changes
    no state, so it is a plain function (evaluate_all maps it over batches inside one jax.jit)."""
    logits = model(batch["images"])
    loss_sum, correct, _ = masked_loss_sum(logits, batch["labels"])
    return {"loss_sum": loss_sum, "correct": correct, "predictions": jnp.argmax(logits, -1)}


class NnxTrainState(struct.PyTreeNode):
    """The model and its optimizer as one pytree, what the trainer's compiled programs take and give
    back: `state` holds every array (nnx.split), `graphdef` the objects' structure, static."""

    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    state: nnx.State

    @classmethod
    def split(cls, model: nnx.Module, optimizer: nnx.Optimizer) -> NnxTrainState:
        graphdef, state = nnx.split((model, optimizer))
        return cls(graphdef, state)

    def merge(self) -> tuple[nnx.Module, nnx.Optimizer]:
        return nnx.merge(self.graphdef, self.state)

    def updated(self, model: nnx.Module, optimizer: nnx.Optimizer) -> NnxTrainState:
        return self.replace(state=nnx.state((model, optimizer)))

    @property
    def step(self) -> jax.Array:
        """The optimizer's step count, int32 (as a Linen TrainState's)."""
        return self.merge()[1].step[...].astype(jnp.int32)

    @property
    def params(self) -> dict:
        """The parameters as a plain nested dict, in the Linen twin's names and layout."""
        return nnx.to_pure_dict(nnx.state(self.merge()[0], nnx.Param))


def create_train_state(key: jax.Array, variant: str, kernel_size: int, init: str, lr: float) -> NnxTrainState:
    """The model drawn from nnx.Rngs(key) and its Adam optimizer (key = jax.random.key(seed), so the
    draws are those of nnx.Rngs(seed))."""
    model = build_nnx_model(variant, nnx.Rngs(key), kernel_size, init)
    return NnxTrainState.split(model, nnx.Optimizer(model, make_optimizer(lr), wrt=nnx.Param))


@partial(jax.jit, donate_argnums=(0, 1))
def train_steps(state: NnxTrainState, totals: dict, images: jax.Array, labels: jax.Array, idx: jax.Array):
    """idx (K, B): K NNX train steps in one dispatch on batches gathered from the device-resident set."""

    def body(carry, batch_idx):
        state, totals = carry
        model, optimizer = state.merge()
        step = optimizer.step[...].astype(jnp.int32)
        metrics = train_step(model, optimizer, gather(images, labels, batch_idx))
        return (state.updated(model, optimizer), accumulate(totals, metrics, step)), None

    if idx.shape[0] == 1:  # no loop at all: XLA:CPU runs a bare step fastest
        return body((state, totals), idx[0])[0]
    return jax.lax.scan(body, (state, totals), idx)[0]


def evaluate_all(state: NnxTrainState, test_x: jax.Array, test_y: jax.Array) -> dict:
    """The whole padded test set in one dispatch: eval_step mapped over its batches."""
    model, _ = state.merge()
    return map_test_batches(lambda batch: eval_step(model, batch), test_x, test_y)


def adam_state(state: NnxTrainState) -> optax.ScaleByAdamState:
    """Adam's step count and moment estimates (plain nested dicts), found by name in the optimizer's state."""
    adam = optax.tree_utils.tree_get(nnx.as_pure(state.merge()[1].opt_state), "ScaleByAdamState")
    return optax.ScaleByAdamState(count=adam.count, mu=nnx.to_pure_dict(adam.mu), nu=nnx.to_pure_dict(adam.nu))


def replace_values(state: nnx.State, values: dict, what: str = "parameters") -> nnx.State:
    """A copy of `state` holding `values` (a plain nested dict of the same keys and shapes, checked:
    nnx.replace_by_pure_dict alone keeps the old value of a key that `values` lacks)."""
    check_same_tree(values, nnx.to_pure_dict(state), what)
    state = jax.tree.map(lambda a: a, state)  # a new State: replace_by_pure_dict works in place
    nnx.replace_by_pure_dict(state, values)
    return state


def with_arrays(state: NnxTrainState, params: dict, adam: optax.ScaleByAdamState | None = None) -> NnxTrainState:
    """The state with these parameters (plain nested dicts) and, if given, Adam's count and moments;
    the optimizer's step becomes Adam's count."""
    model, optimizer = state.merge()
    nnx.update(model, replace_values(nnx.state(model, nnx.Param), params))
    if adam is not None:
        opt_state = nnx.as_pure(optimizer.opt_state)
        old = optax.tree_utils.tree_get(opt_state, "ScaleByAdamState")
        new = optax.ScaleByAdamState(count=adam.count, mu=replace_values(old.mu, adam.mu, "Adam's first moments"),
                                     nu=replace_values(old.nu, adam.nu, "Adam's second moments"))
        nnx.update(optimizer.opt_state, nnx.state(optax.tree_utils.tree_set(opt_state, ScaleByAdamState=new)))
        optimizer.step[...] = jnp.asarray(adam.count, optimizer.step[...].dtype)
    return state.updated(model, optimizer)
