"""The kit's training loop over each side's own model, loss, optimizer and schedule, on the proof's
data (parity.dataset: the same batches on both sides for a seed): what a port's accuracy over seeds and
an example's `train.py` run. The JAX step is compiled once (jax.jit over the model's variables);
dropout draws from each side's own random numbers, as in real training."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

from parity.dataset import Dataset, eval_batches, num_batches, take, train_batches
from parity.jax_side import as_args as as_jax_args
from parity.port import Port
from parity.torch_side import as_args

EVAL_BATCH = 1000


@dataclass
class Result:
    """One training run: the mean train loss of each epoch, then the test set's loss and accuracy (the
    argmax of the output's last axis against the labels; a label below 0 is not counted)."""

    framework: str
    seed: int
    train_loss: list[float]
    test_loss: float
    test_accuracy: float
    seconds: float


def subset(dataset, train_size: int | None, test_size: int | None) -> Dataset:
    return Dataset.of(dataset).subset(train_size, test_size)


def train_torch(port: Port, dataset: Dataset, seed: int, epochs: int, progress=None) -> Result:
    start = time.perf_counter()
    side = port.torch
    torch.manual_seed(seed)  # dropout's masks
    model = side.model(seed)
    optimizer = side.optimizer(model)
    scheduler = side.make_scheduler(optimizer, num_batches(len(dataset.train_labels), port.batch_size))
    n = len(dataset.train_labels)
    losses = []
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for idx in train_batches(n, port.batch_size, seed, epoch):
            raw = port.torch_inputs(take(dataset.train_inputs, idx))
            x = as_args(raw, torch.float32)
            y = torch.from_numpy(dataset.train_labels[idx].astype(np.int64))
            if side.step is not None:  # the script's own step
                loss = side.step(model, optimizer, x if isinstance(raw, tuple) else x[0], y)
            else:
                optimizer.zero_grad(set_to_none=True)
                loss = side.loss(model(*x), y)
                loss.backward()
                side.optimizer_step(model, optimizer)
            if scheduler is not None and side.scheduler_interval == "step":
                scheduler.step()
            total += float(loss.detach() if isinstance(loss, torch.Tensor) else loss) * len(idx)
            count += len(idx)
        if scheduler is not None and side.scheduler_interval == "epoch":
            scheduler.step()
        losses.append(total / count)
        if progress:
            progress(f"torch seed {seed} epoch {epoch}: train loss {losses[-1]:.4f}")
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for idx in eval_batches(len(dataset.test_labels), EVAL_BATCH):
            out = model(*as_args(port.torch_inputs(take(dataset.test_inputs, idx)), torch.float32))
            y = torch.from_numpy(dataset.test_labels[idx].astype(np.int64))
            loss_sum += float(side.loss(out, y)) * len(idx)
            correct += int(((logits_of(out, side).argmax(-1) == y) & (y >= 0)).sum())
    m = len(dataset.test_labels)
    return Result("torch", seed, losses, loss_sum / m, correct / counted(dataset), time.perf_counter() - start)


def logits_of(out, side=None):
    """The predictions' scores, classes on the last axis: the side's own `scores` of the output if it
    has one (TorchSide.scores / JaxSide.scores), else the output, or its first element where the model
    returns several (nanoGPT's (logits, loss))."""
    if side is not None and side.scores is not None:
        return side.scores(out)
    return out[0] if isinstance(out, (tuple, list)) else out


def counted(dataset: Dataset) -> int:
    """The test labels an accuracy counts: all but an ignore_index (negative, as -1 or -100)."""
    return int((np.asarray(dataset.test_labels) >= 0).sum())


_PROGRAMS: dict = {}  # (the JaxSide, steps per epoch, graph) -> (step, evaluate), compiled once for every seed


def jax_programs(side, steps_per_epoch: int, seed: int):
    """(params, other state, tx, step, evaluate) for one seed: the model's seeded draw, and the jitted
    train step and evaluation, shared by every seed of the same model (6 seeds: one compilation)."""
    tx = side.optimizer(steps_per_epoch)
    if side.api == "nnx":
        graphdef, params, other = nnx.split(side.model(seed), nnx.Param, ...)

        def forward(params, other, x, train):
            other = jax.tree.map(lambda a: a, other)  # fresh Variables in this trace (the model mutates them)
            model = nnx.merge(graphdef, params, other)
            model.train() if train else model.eval()
            out = model(*as_jax_args(x))
            return out, nnx.state(model, nnx.Not(nnx.Param))  # running statistics, random-number counts
    else:
        module, variables = side.model(seed)
        graphdef, params = module, variables["params"]
        other = {"step": jnp.zeros((), jnp.int32), "key": jax.random.key(seed),
                 **({"batch_stats": variables["batch_stats"]} if "batch_stats" in variables else {})}

        def forward(params, other, x, train):
            mutable = ["batch_stats"] if train and "batch_stats" in other else False
            mode = {side.train_kwarg: train} if side.train_kwarg else {}
            stats = {"batch_stats": other["batch_stats"]} if "batch_stats" in other else {}
            result = module.apply({"params": params, **stats}, *as_jax_args(x), **mode, mutable=mutable,
                                  rngs={"dropout": jax.random.fold_in(other["key"], other["step"])})
            out, new = result if mutable else (result, {})
            return out, {**other, **new, "step": other["step"] + 1}

    key = (side, steps_per_epoch, graphdef)
    if key not in _PROGRAMS:
        @jax.jit
        def step(params, other, opt_state, x, y):
            def loss_fn(params):
                out, new_other = forward(params, other, x, True)
                return side.loss(out, y), new_other

            (loss, other), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), other, opt_state, loss

        @jax.jit
        def evaluate(params, other, x, y):
            out, _ = forward(params, other, x, False)
            return side.loss(out, y) * len(y), ((logits_of(out, side).argmax(-1) == y) & (y >= 0)).sum()

        _PROGRAMS[key] = (step, evaluate)
    return (params, other, tx, *_PROGRAMS[key])


def own_step(side, steps_per_epoch: int, seed: int, params, other):
    """A step function like jax_programs' over the port's own JaxSide.train_step (NNX: on the model and
    an nnx.Optimizer; Linen: on a TrainState), carrying its objects in opt_state."""
    tx = side.optimizer(steps_per_epoch)
    if side.api == "nnx":
        graphdef = nnx.graphdef(side.model(seed))
        model = nnx.merge(graphdef, params, other)
        carried = (model, nnx.Optimizer(model, tx, wrt=nnx.Param))

        def step(params, other, carried, x, y):
            model, optimizer = carried
            model.train()
            loss = side.train_step(model, optimizer, x, y)
            _, params, other = nnx.split(model, nnx.Param, ...)
            return params, other, carried, loss
        return carried, step
    from flax.training.train_state import TrainState

    module, _ = side.model(seed)
    state = TrainState.create(apply_fn=module.apply, params=params, tx=tx)

    def step(params, other, state, x, y):
        state, loss = side.train_step(state, x, y)
        return state.params, other, state, loss
    return state, step


def train_jax(port: Port, dataset: Dataset, seed: int, epochs: int, progress=None) -> Result:
    start = time.perf_counter()
    n = len(dataset.train_labels)
    params, other, tx, step, evaluate = jax_programs(port.jax, -(-n // port.batch_size), seed)
    opt_state = tx.init(params)
    if port.jax.train_step is not None:  # the port's own step, as its script trains
        opt_state, step = own_step(port.jax, -(-n // port.batch_size), seed, params, other)
    losses = []
    for epoch in range(1, epochs + 1):
        total = jnp.zeros(())
        for idx in train_batches(n, port.batch_size, seed, epoch):
            x = jax.tree.map(jnp.asarray, port.jax_inputs(take(dataset.train_inputs, idx)))
            y = jnp.asarray(dataset.train_labels[idx].astype(np.int32))
            params, other, opt_state, loss = step(params, other, opt_state, x, y)
            total = total + loss * len(idx)
        losses.append(float(total) / n)
        if progress:
            progress(f"jax seed {seed} epoch {epoch}: train loss {losses[-1]:.4f}")
    loss_sum, correct = 0.0, 0
    for idx in eval_batches(len(dataset.test_labels), EVAL_BATCH):
        x = jax.tree.map(jnp.asarray, port.jax_inputs(take(dataset.test_inputs, idx)))
        y = jnp.asarray(dataset.test_labels[idx].astype(np.int32))
        batch_loss, batch_correct = evaluate(params, other, x, y)
        loss_sum += float(batch_loss)
        correct += int(batch_correct)
    m = len(dataset.test_labels)
    return Result("jax", seed, losses, loss_sum / m, correct / counted(dataset), time.perf_counter() - start)


TRAIN = {"torch": train_torch, "jax": train_jax}
