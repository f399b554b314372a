"""--seeds on the JAX twin: many seeds in one process, each exactly the model `--seed S` trains.

The whole train state is a pytree, so `jax.vmap` turns flax_impl.steps' train step into one that
trains N independent models at once (stacked states, each seed on its own batches). Whether that
beats one seed after another depends on the backend, so both are here and `--sweep auto` picks:
- CPU: one after another. Measured on a 2-core Intel Xeon (custom-vjp model, 8 seeds, 16-step
  scans): vmapped 14.3 ms per model-step against 8.4 ms one after another, with the vmapped
  convolutions as batched matmuls (flax_impl/custom_vjp.py; as grouped convolutions 21.8 ms). One
  after another reuses the single-seed compiled step, so each seed's metrics are bit for bit those
  of its `--seed S` run.
- GPU, TPU: vmapped. Measured on one H200 (issue #16's prototype, 64-step scans): 0.148 ms per
  step for 1 model, 0.086 per model-step for 8, 0.068 for 32; benchmarks/seeds.py measures it here.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from common.config import TrainConfig
from common.phases import CLOCK
from common.runner import Run
from common.sweep import Sweep, seed_config, train_sweep
from data import FashionMNIST, num_batches
from data.batching import epoch_order
from flax_impl import compile_cache, training
from flax_impl.model import count_parameters
from flax_impl.placement import Placement, as_placement
from flax_impl.training import State

SWEEP_MODES = ("auto", "vmap", "sequential")
DEFAULT_MODE = {"cpu": "sequential"}  # every other backend: vmap (see the module's docstring)


def sweep_mode(config: TrainConfig, platform: str) -> tuple[str, str]:
    """The way the seeds train (--sweep, else the backend's measured default) and why."""
    asked = config.sweep
    if asked != "auto":
        return asked, "--sweep"
    mode = DEFAULT_MODE.get(platform, "vmap")
    return mode, f"--sweep auto on {platform}"


def same_structure(states: list[State]) -> list[State]:
    """The states with the first one's apply_fn and optimizer, so one compiled step serves them all."""
    treedef = jax.tree.structure(states[0])
    return [jax.tree.unflatten(treedef, jax.tree.leaves(s)) for s in states]


def stack(states: list[State]) -> State:
    """N states -> one state whose every leaf has a leading axis of N."""
    states = same_structure(states)
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def seed_states(config: TrainConfig, placement: Placement) -> list[State]:
    """Each seed's initial state exactly as a `--seed S` run creates it."""
    return same_structure([training.create_train_state(seed_config(config, s), placement)
                           for s in config.seeds])


class _Engine:
    """What both ways of training the seeds share: the settings, and the data on the device once."""

    def __init__(self, config: TrainConfig, placement: Placement, k: int):
        self.config, self.placement, self.k = config, placement, k
        self.seeds = config.seeds

    def load(self, dataset: FashionMNIST) -> None:
        self.train_x, self.train_y, self.test_x, self.test_y = training.dataset_on_device(dataset, self.placement)
        self.num_test = len(dataset.test_labels)


class SequentialEngine(_Engine):
    """The seeds one after another, each through flax_impl.training's own epoch and compiled step."""

    mode = "sequential"

    def __init__(self, config: TrainConfig, placement: Placement, k: int):
        super().__init__(config, placement, k)
        self.states = seed_states(config, placement)

    def compile(self) -> None:
        n = int(self.train_y.shape[0])
        self.compiled = training.compile_all(self.states[0], self.train_x, self.train_y, self.test_x, self.test_y, n,
                                           self.config.batch_size, self.k, self.placement)

    def restore(self, i: int, ckpt) -> None:
        self.states[i] = training.restore(self.states[i], ckpt, self.placement)

    def train_epoch(self, epoch: int, active: list[int], bar, runs: list[Run]) -> dict[int, tuple[float, int]]:
        out = {}
        for i in active:
            self.states[i], loss, correct = training.train_epoch(
                self.compiled, self.states[i], self.train_x, self.train_y, runs[i].config, epoch, self.k,
                self.placement, runs[i], bar)
            out[i] = (loss, correct)
        return out

    def evaluate(self) -> list[tuple[float, int, np.ndarray]]:
        return [training.evaluate(self.compiled["eval"], s, self.test_x, self.test_y, self.num_test) for s in self.states]

    def checkpoint(self, i: int) -> tuple[int, dict, dict, dict]:
        return training.checkpoint_arrays(self.states[i])

    def weights(self, i: int) -> dict:
        return training.weights_numpy(self.states[i])


# flax_impl.steps' fused train steps and evaluation, mapped over a leading seed axis of the state, the epoch
# totals and the batch indices; the data set is shared (in_axes None), held once on the device.
TRAIN_STEPS_VMAPPED = {api: jax.jit(jax.vmap(fn, in_axes=(0, 0, None, None, 0)), donate_argnums=(0, 1))
                       for api, fn in training.TRAIN_STEPS.items()}
EVALUATE_VMAPPED = {api: jax.jit(jax.vmap(fn, in_axes=(0, None, None))) for api, fn in training.EVALUATE_ALL.items()}


def zero_totals(count: int, placement: Placement) -> dict:
    """flax_impl.training's per-epoch totals for `count` seeds (a leading axis)."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (count, *a.shape)), training.zero_totals(placement))


@jax.jit
def keep_where(active: jax.Array, new: State, old: State) -> State:
    """Per seed, the new state where active, else the old (a resume that found seeds at different epochs)."""
    return jax.tree.map(lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


class VmappedEngine(_Engine):
    """All seeds in one stacked state, trained by one vmapped step per dispatch (one device)."""

    mode = "vmap"

    def __init__(self, config: TrainConfig, placement: Placement, k: int):
        super().__init__(config, placement, k)
        states = seed_states(config, placement)
        self.first = states[0]  # for the model summary
        self.state = stack(states)
        self._host = None  # the stacked state fetched once per epoch for the seeds' checkpoints

    def compile(self) -> None:
        p, n, k = self.placement, int(self.train_y.shape[0]), self.k
        totals = self.zero_totals()
        self.compiled = {}
        for shape in training.epoch_plan(n, self.config.batch_size, k):
            idx = jax.ShapeDtypeStruct((len(self.seeds), *shape), jnp.int32, sharding=p.replicated)
            self.compiled[shape] = training.compile_program(
                TRAIN_STEPS_VMAPPED[self.config.api], (self.state, totals, self.train_x, self.train_y, idx), p.platform)
        self.compiled["eval"] = training.compile_program(EVALUATE_VMAPPED[self.config.api], (self.state, self.test_x, self.test_y),
                                                       p.platform)

    def zero_totals(self) -> dict:
        return zero_totals(len(self.seeds), self.placement)

    def restore(self, i: int, ckpt) -> None:
        one = training.restore(jax.tree.map(lambda a: a[i], self.state), ckpt, self.placement)
        self.state = jax.tree.map(lambda a, b: a.at[i].set(b), self.state, one)
        self._host = None

    def train_epoch(self, epoch: int, active: list[int], bar, runs: list[Run]) -> dict[int, tuple[float, int]]:
        n = int(self.train_y.shape[0])
        steps = num_batches(n, self.config.batch_size)
        check_every = training.nonfinite_check_every(self.k, self.placement.platform)
        held = None if len(active) == len(self.seeds) else jax.tree.map(jnp.copy, self.state)
        first_step = np.asarray(self.state.step)
        orders = [epoch_order(n, s, epoch).astype(np.int32) for s in self.seeds]
        totals = self.zero_totals()

        def check():
            first_bad = np.asarray(totals["first_bad"])
            for i in active:
                runs[i].check_finite(-1 if first_bad[i] < 0 else int(first_bad[i] - first_step[i]), epoch, steps)

        chunks = zip(*(training.epoch_dispatches(o, self.config.batch_size, self.k) for o in orders))
        for j, per_seed in enumerate(chunks, start=1):
            idx = np.stack(per_seed)  # (seeds, steps, batch)
            self.state, totals = self.compiled[idx.shape[1:]](self.state, totals, self.train_x, self.train_y,
                                                              self.placement.put(idx, self.placement.replicated))
            if check_every and j % check_every == 0:
                check()
            bar.update(idx.shape[1] * len(active))
        check()
        if held is not None:
            mask = np.isin(np.arange(len(self.seeds)), active)
            self.state = keep_where(jnp.asarray(mask), self.state, held)
        self._host = None
        host = jax.device_get({"loss_sum": totals["loss_sum"], "correct": totals["correct"]})
        return {i: (float(host["loss_sum"][i]) / n, int(host["correct"][i])) for i in active}

    def evaluate(self) -> list[tuple[float, int, np.ndarray]]:
        out = jax.device_get(self.compiled["eval"](self.state, self.test_x, self.test_y))
        return [(float(out["loss_sum"][i]) / self.num_test, int(out["correct"][i]),
                 np.asarray(out["predictions"][i])[: self.num_test]) for i in range(len(self.seeds))]

    def seed_state(self, i: int) -> State:
        if self._host is None:
            self._host = jax.device_get(self.state)
        return jax.tree.map(lambda a: a[i], self._host)

    def checkpoint(self, i: int) -> tuple[int, dict, dict, dict]:
        return training.checkpoint_arrays(self.seed_state(i))

    def weights(self, i: int) -> dict:
        return training.weights_numpy(self.seed_state(i))


def train_seeds(config: TrainConfig, dataset: FashionMNIST, where: jax.Device | Placement) -> dict:
    """--seeds: train every seed for config.epochs, vmapped or one after another (--sweep)."""
    placement = as_placement(where)
    mode, why = sweep_mode(config, placement.platform)
    k = training.steps_per_dispatch(config, placement.platform)
    with CLOCK("init"):
        engine = (VmappedEngine if mode == "vmap" else SequentialEngine)(config, placement, k)
    with CLOCK("write"):
        sweep = Sweep(config, "flax", training.versions(), placement.describe(), training.environment(placement))
    params = (engine.first if mode == "vmap" else engine.states[0]).params
    sweep.describe(training.model_summary(config, params, placement.platform), count_parameters(params), dataset,
                   mode, why)
    with CLOCK("data"):
        engine.load(dataset)
    start = time.perf_counter()
    with CLOCK("compile"), compile_cache.CacheCounter() as cache:
        engine.compile()
    sweep.compiled(time.perf_counter() - start, cache.describe())
    return train_sweep(config, dataset, sweep, engine, num_batches(len(dataset.train_labels), config.batch_size))
