"""The training math of the JAX twin as pure functions: loss, optimizer, one train step, one
evaluation step, and their fused forms that the trainer compiles (k steps, or the whole test set,
in one dispatch). Read it next to torch_impl/steps.py; nothing here touches the host.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

EVAL_BATCH_SIZE = 128  # evaluation only; larger batches ran slower on a 2-core CPU (2.0 s at 1000, 0.9 s at 128)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-sample softmax cross-entropy on integer labels, as torch.nn.functional.cross_entropy."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_optimizer(lr: float) -> optax.GradientTransformation:
    """torch.optim.Adam at its defaults. Plain Python floats, not optax.inject_hyperparams: its float32 b2
    would make 1 - b2, and so Adam's second moment, differ from torch's by 1.3e-5 (test_optimizer)."""
    return optax.adam(learning_rate=lr, b1=0.9, b2=0.999, eps=1e-8)


def check_same_tree(new, old, what: str = "parameters") -> None:
    """Raise ValueError, naming every difference, unless `new` has `old`'s keys and shapes: weights
    are replaced whole, never partly (a missing layer would keep its old values without a word)."""
    def shapes(tree):
        return {jax.tree_util.keystr(path, simple=True, separator="."): jnp.shape(leaf)
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    have, want = shapes(new), shapes(old)
    problems = [f"missing {', '.join(sorted(want.keys() - have.keys()))}" if want.keys() - have.keys() else "",
                f"unexpected {', '.join(sorted(have.keys() - want.keys()))}" if have.keys() - want.keys() else "",
                "; ".join(f"{k} has shape {have[k]}, expected {want[k]}" for k in sorted(want.keys() & have.keys())
                          if have[k] != want[k])]
    if any(problems):
        raise ValueError(f"{what} do not match the model's: " + "; ".join(p for p in problems if p))


def masked_loss_sum(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(summed loss, correct count, valid mask) of a batch whose labels < 0 mark padding, which counts
    for nothing in either sum (a data-parallel or evaluation batch is padded to a fixed size)."""
    valid = labels >= 0
    loss_sum = jnp.where(valid, cross_entropy(logits, jnp.maximum(labels, 0)), 0.0).sum()
    correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
    return loss_sum, correct, valid


def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One Adam step, a pure function: (state, batch) -> (state, metrics); metrics stay on device.

    The loss is the mean over the batch's real samples (labels < 0 are padding).
    """

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, batch["images"])
        loss_sum, correct, valid = masked_loss_sum(logits, batch["labels"])
        return loss_sum / valid.sum(), (loss_sum, correct)

    (_, (loss_sum, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    # Accuracy from the same forward pass as the loss.
    return state.apply_gradients(grads=grads), {"loss_sum": loss_sum, "correct": correct}


def eval_step(state: TrainState, batch: dict) -> dict:
    """Summed loss, correct count and predictions of a batch; labels < 0 mark padding."""
    logits = state.apply_fn({"params": state.params}, batch["images"])
    loss_sum, correct, _ = masked_loss_sum(logits, batch["labels"])
    return {"loss_sum": loss_sum, "correct": correct, "predictions": jnp.argmax(logits, -1)}


def accumulate(totals: dict, metrics: dict, step: jax.Array) -> dict:
    """Epoch totals after one step; first_bad keeps the global step of the first non-finite loss (-1: none)."""
    bad = (totals["first_bad"] < 0) & ~jnp.isfinite(metrics["loss_sum"])
    return {"loss_sum": totals["loss_sum"] + metrics["loss_sum"], "correct": totals["correct"] + metrics["correct"],
            "first_bad": jnp.where(bad, step, totals["first_bad"])}


def gather(images: jax.Array, labels: jax.Array, idx: jax.Array) -> dict:
    """The batch of the given indices from the device-resident set; an index < 0 is padding (label -1)."""
    return {"images": images[idx], "labels": jnp.where(idx >= 0, labels[idx], -1)}


@partial(jax.jit, donate_argnums=(0, 1))
def train_steps(state: TrainState, totals: dict, images: jax.Array, labels: jax.Array, idx: jax.Array):
    """idx (K, B): K train steps in one dispatch on batches gathered from the device-resident set."""

    def body(carry, batch_idx):
        state, totals = carry
        new_state, metrics = train_step(state, gather(images, labels, batch_idx))
        return (new_state, accumulate(totals, metrics, state.step)), None

    if idx.shape[0] == 1:  # no loop at all: XLA:CPU runs a bare step fastest
        return body((state, totals), idx[0])[0]
    return jax.lax.scan(body, (state, totals), idx)[0]


def evaluate_all(state: TrainState, test_x: jax.Array, test_y: jax.Array) -> dict:
    """The whole padded test set in one dispatch: eval_step mapped over batches of EVAL_BATCH_SIZE."""
    return map_test_batches(lambda batch: eval_step(state, batch), test_x, test_y)


def map_test_batches(eval_batch, test_x: jax.Array, test_y: jax.Array) -> dict:
    """eval_batch (a batch -> its loss_sum, correct, predictions) over the padded test set, summed."""
    images = test_x.reshape(-1, EVAL_BATCH_SIZE, *test_x.shape[1:])  # (batches, 128, 28, 28, 1)
    labels = test_y.reshape(-1, EVAL_BATCH_SIZE)
    outs = jax.lax.map(lambda b: eval_batch({"images": b[0], "labels": b[1]}), (images, labels))
    return {"loss_sum": outs["loss_sum"].sum(), "correct": outs["correct"].sum(),
            "predictions": outs["predictions"].reshape(-1)}
