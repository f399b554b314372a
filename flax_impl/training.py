"""The run machinery of the JAX twin, between the math (flax_impl/steps.py) and the command line
(flax_impl/train.py): the train state, the data on the device, compiling, one epoch, evaluation,
and the weights and Adam state in and out of checkpoints. Single runs and sweeps both use it.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache, partial

import flax
import jax
import jax.extend
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax
from flax.training.train_state import TrainState

from common.checkpoint import load_weights
from common.config import TrainConfig
from common.runner import NONFINITE_CHECK_EVERY, Run
from data import FashionMNIST, num_batches, to_float
from data.batching import epoch_order
from flax_impl import nnx_steps, steps
from flax_impl.convert import flax_to_torch, torch_to_flax
from flax_impl.nnx_steps import NnxTrainState
from flax_impl.placement import Placement, as_placement
from flax_impl.steps import EVAL_BATCH_SIZE, make_optimizer
from flax_impl.variants import NNX_VARIANTS, VARIANTS, build_model, resolve_variant

# Steps fused into one dispatch (a lax.scan over a chunk of batches). Measured on a 2-core CPU
# (make bench, 3 interleaved rounds): a scan of 16 steps ran at 1.09x one step per dispatch (8,318
# against 7,641 samples/s), and a whole 1-epoch run trained in 7.4 s against 8.2 s. On an
# accelerator, per-step dispatch overhead dominates this small model: fuse more (unmeasured here).
STEPS_PER_DISPATCH = {"cpu": 16, "gpu": 64, "tpu": 64}
# XLA options per backend. JAX 0.10 hands XLA:CPU's forward convolutions to YNNPACK, which ran
# this model's 32->64 convolution at 3.7 ms per batch of 64 against 1.7 ms on XLA's Eigen path
# (its weight gradient 6.6 ms against 2.3 ms); an empty list keeps every op on XLA's own path.
COMPILER_OPTIONS = {"cpu": {"xla_cpu_experimental_ynn_fusion_type": ""}}
APIS = ("linen", "nnx")
State = TrainState | NnxTrainState
# The two Flax APIs' fused programs: the same signatures, each on its own kind of train state
# (flax.training.TrainState for Linen, flax_impl.nnx_steps.NnxTrainState for NNX).
TRAIN_STEPS = {"linen": steps.train_steps, "nnx": nnx_steps.train_steps}
EVALUATE_ALL = {"linen": steps.evaluate_all, "nnx": nnx_steps.evaluate_all}


def model_variant(config: TrainConfig, platform: str) -> str:
    return resolve_variant(config.variant, platform)


def api_of(state: State) -> str:
    return "nnx" if isinstance(state, NnxTrainState) else "linen"


def create_train_state(config: TrainConfig, where: jax.Device | Placement) -> State:
    """Parameters initialised from config.seed (or config.init_weights) and the optimizer's state:
    a Linen TrainState, or with --api nnx the NNX model and nnx.Optimizer as an NnxTrainState."""
    placement = as_placement(where)
    variant = model_variant(config, placement.platform)
    with jax.default_device(placement.local_device):
        key = jax.random.key(config.seed)
        init = init_program(config.api, variant, config.kernel_size, config.init, config.lr, placement.local_device)
        state = init(key)
    if config.init_weights:
        state = with_params(state, torch_to_flax(load_weights(config.init_weights, config.kernel_size))["params"])
    return placement.replicate(state)


@lru_cache(maxsize=16)
def init_program(api: str, variant: str, kernel_size: int, init_name: str, lr: float, device: jax.Device):
    """The initial train state as one compiled program of the seed's key: one jit, since op by op init
    compiled ~70 small XLA programs (7 s of a 25 s one-epoch run on a 2-core CPU). Kept per process for
    every seed: a model built for many seeds (the kit's init check, 32 draws a side for the convnet's
    10-value bias) compiled it each time, 2.3 s a draw on a 2-core CPU."""
    if api == "nnx":
        init = partial(nnx_steps.create_train_state, variant=variant, kernel_size=kernel_size, init=init_name, lr=lr)
    else:
        model = build_model(variant, kernel_size, init_name)
        tx = make_optimizer(lr)

        def init(key):
            params = model.init(key, jnp.zeros((1, 28, 28, 1), jnp.float32))["params"]
            return TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    with jax.default_device(device):
        key = jax.random.key(0)  # only its shape and type: the program takes any seed's key
        return compile_program(jax.jit(init), (key,), device.platform)


def with_params(state: State, params: dict) -> State:
    """The state with these parameters (Linen's layout; the optimizer's state as it was)."""
    if api_of(state) == "nnx":
        return nnx_steps.with_arrays(state, params)
    steps.check_same_tree(params, state.params)
    return state.replace(params=params)


def device_arrays(images: np.ndarray, labels: np.ndarray, where: jax.Device | Placement, pad_to: int = 1):
    """The whole split on the device(s) once: float (N, 28, 28, 1) and int32 labels, padded with label -1.

    Pixels travel as uint8 and become floats on the device by a lookup in data.to_float's own table
    of all 256 values, so they are bit for bit the shared loader's (0.9 s -> 0.2 s on a 2-core CPU).
    """
    pad = -len(labels) % pad_to
    x = np.pad(images, ((0, pad), (0, 0), (0, 0)))
    y = np.pad(labels.astype(np.int32), (0, pad), constant_values=-1)
    placement = as_placement(where)
    table = placement.put(to_float(np.arange(256, dtype=np.uint8)), placement.replicated)
    x = _pixels_to_float(table, placement.put(x, placement.replicated))
    return x, placement.put(y, placement.replicated)


def dataset_on_device(dataset: FashionMNIST, where: jax.Device | Placement) -> tuple[jax.Array, ...]:
    """Train images and labels, then test images and labels padded to whole evaluation batches."""
    train = device_arrays(dataset.train_images, dataset.train_labels, where)
    test = device_arrays(dataset.test_images, dataset.test_labels, where, pad_to=EVAL_BATCH_SIZE)
    return (*train, *test)


@jax.jit
def _pixels_to_float(table: jax.Array, pixels: jax.Array) -> jax.Array:
    return table[pixels][..., None]  # uint8 (N, 28, 28) -> float32 (N, 28, 28, 1)


def zero_totals(where: jax.Device | Placement) -> dict:
    """Per-epoch sums on the device; first_bad is the global step of the first non-finite loss, or -1."""
    totals = {"loss_sum": np.zeros((), np.float32), "correct": np.zeros((), np.int32),
              "first_bad": np.full((), -1, np.int32)}
    return as_placement(where).replicate(totals)


def padded(batch: int, multiple: int) -> int:
    """The batch rounded up to a multiple of the device count (padding trains nothing)."""
    return -(-batch // multiple) * multiple


def epoch_plan(n: int, batch_size: int, k: int, multiple: int = 1) -> list[tuple[int, int]]:
    """(steps per dispatch, batch size) of each distinct dispatch shape in an epoch, in order of use."""
    full, tail = divmod(n, batch_size)
    b = padded(batch_size, multiple)
    shapes = []
    if full // k:
        shapes.append((k, b))
    if full % k and (1, b) not in shapes:
        shapes.append((1, b))
    if tail and (1, padded(tail, multiple)) not in shapes:
        shapes.append((1, padded(tail, multiple)))
    return shapes


def epoch_dispatches(order: np.ndarray, batch_size: int, k: int, multiple: int = 1):
    """Index arrays (steps, batch) in dispatch order: chunks of k full batches, the rest one by one.

    With several devices, a batch that does not split evenly is padded with -1 to the next multiple
    of the device count: every device gets the same share, and the step's mean counts real samples
    only, which is the math of torch_impl's uneven DistributedDataParallel shares.
    """
    def pad(rows):
        extra = padded(rows.shape[1], multiple) - rows.shape[1]
        return np.pad(rows, ((0, 0), (0, extra)), constant_values=-1) if extra else rows

    n = len(order)
    full = n // batch_size
    steps = order[: full * batch_size].reshape(full, batch_size)
    for start in range(0, full - full % k, k):
        yield pad(steps[start : start + k])
    for i in range(full - full % k, full):
        yield pad(steps[i : i + 1])
    if n % batch_size:
        yield pad(order[full * batch_size :][None])


def compile_with_options(lowered, platform: str):
    """Compile with the backend's XLA options (COMPILER_OPTIONS, never changed here). An option this
    jaxlib does not know (older and newer ones differ) is left out of this compile with a warning:
    the step may be slower, the math is the same."""
    options = dict(COMPILER_OPTIONS.get(platform) or {})
    while True:
        try:
            return lowered.compile(options or None)
        except jax.errors.JaxRuntimeError as e:
            unknown = [k for k in options if f"No such compile option: '{k}'" in str(e)]
            if not unknown:
                raise
        for k in unknown:
            warnings.warn(f"this jaxlib ({jax.__version__}) has no XLA option {k}; compiling without it "
                          "(the step may be slower, the math is the same)", stacklevel=2)
            del options[k]


def compile_program(jitted, args: tuple, platform: str):
    """A jitted function compiled ahead of time for these arguments with the backend's options
    (through JAX's persistent compilation cache, where it is on: flax_impl/compile_cache.py)."""
    return compile_with_options(jitted.lower(*args), platform)


def compile_train_steps(state, images, labels, shape: tuple[int, int], placement: Placement):
    """train_steps compiled for one index shape (steps, batch) with the backend's options."""
    idx = jax.ShapeDtypeStruct(shape, jnp.int32, sharding=placement.batch)
    return compile_program(TRAIN_STEPS[api_of(state)], (state, zero_totals(placement), images, labels, idx),
                           placement.platform)


def compile_eval(state, test_x, test_y, placement: Placement):
    """evaluate_all compiled for the padded test set with the backend's options."""
    return compile_program(jax.jit(EVALUATE_ALL[api_of(state)]), (state, test_x, test_y), placement.platform)


def compile_all(state, images, labels, test_x, test_y, n, batch_size, k, placement: Placement):
    """Compile every train and eval shape ahead of time, so no epoch pays for compilation."""
    compiled = {shape: compile_train_steps(state, images, labels, shape, placement)
                for shape in epoch_plan(n, batch_size, k, placement.size)}
    compiled["eval"] = compile_eval(state, test_x, test_y, placement)
    return compiled


def evaluate(eval_fn, state: State, test_x: jax.Array, test_y: jax.Array, num_test: int):
    """Mean loss, number correct and predictions over the (padded) test set, in file order: one
    dispatch and one fetch (79 of each, batch by batch, took 0.45 s of a 2-core CPU's epoch)."""
    out = jax.device_get(eval_fn(state, test_x, test_y))
    return float(out["loss_sum"]) / num_test, int(out["correct"]), np.asarray(out["predictions"])[:num_test]


def versions() -> dict[str, str]:
    return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__}


def environment(placement: Placement) -> dict:
    """What else decides this run's numbers and speed: jaxlib, the backend's runtime, the devices, threads."""
    backend = jax.extend.backend.get_backend(placement.platform)
    return {"jaxlib": jaxlib.__version__, "backend": placement.platform,
            "backend_version": getattr(backend, "platform_version", None),
            "devices": sorted({d.device_kind for d in placement.devices}), "process_count": jax.process_count(),
            "xla_flags": os.environ.get("XLA_FLAGS"), "compiler_options": COMPILER_OPTIONS.get(placement.platform),
            "default_matmul_precision": jax.config.jax_default_matmul_precision}


def steps_per_dispatch(config: TrainConfig, platform: str) -> int:
    """--steps-per-dispatch, else the backend's default. The idiomatic model on XLA:CPU runs one
    step per dispatch: inside a lax.scan, XLA:CPU takes its convolutions' weight gradients off the
    Eigen path (185 against 1,800 samples/s at 16 steps per dispatch, measured here); the
    custom-vjp variant writes those gradients as plain convolutions and scans well."""
    if config.steps_per_dispatch:
        return config.steps_per_dispatch
    if platform == "cpu" and model_variant(config, platform) == "idiomatic":
        return 1
    return STEPS_PER_DISPATCH.get(platform, 1)


def adam_state(state: State) -> optax.ScaleByAdamState:
    """Adam's step count and moment estimates, found by name in the optimizer's state."""
    if api_of(state) == "nnx":
        return nnx_steps.adam_state(state)
    return optax.tree_utils.tree_get(state.opt_state, "ScaleByAdamState")


def adam_state_numpy(state: State) -> tuple[int, dict, dict]:
    """Adam's step count and moment estimates in torch's layout and names, as NumPy."""
    adam = adam_state(state)
    return (int(adam.count), flax_to_torch(jax.device_get({"params": adam.mu})),
            flax_to_torch(jax.device_get({"params": adam.nu})))


def restore(state: State, ckpt, placement: Placement) -> State:
    """Weights and Adam state from a training checkpoint (torch layout), bit for bit."""
    def put(tree):
        return placement.replicate(torch_to_flax(tree)["params"])

    def count():  # a buffer each: the counts are donated separately
        return placement.put(np.asarray(ckpt.adam_step, np.int32), placement.replicated)

    adam = optax.ScaleByAdamState(count=count(), mu=put(ckpt.exp_avg), nu=put(ckpt.exp_avg_sq))
    weights = put(ckpt.weights)
    if api_of(state) == "nnx":
        return placement.replicate(nnx_steps.with_arrays(state, weights, adam))
    for what, new in (("parameters", weights), ("Adam's first moments", adam.mu), ("Adam's second moments", adam.nu)):
        steps.check_same_tree(new, state.params, what)  # the NNX path checks the same in with_arrays
    opt_state = optax.tree_utils.tree_set(state.opt_state, ScaleByAdamState=adam)
    return state.replace(step=count(), params=weights, opt_state=opt_state)


def model_summary(config: TrainConfig, params: dict, platform: str) -> str:
    """The model's class, settings and parameter shapes, as the trainer prints them."""
    variant = model_variant(config, platform)
    model = (NNX_VARIANTS if config.api == "nnx" else VARIANTS)[variant]
    return "\n".join(
        [f"{model.__module__}.{model.__name__}(conv2d_kernel_size={config.kernel_size}, "
         f"init={config.init!r}), NHWC; Flax {config.api}, variant {variant} (--api, --variant)"]
        + [f"  ({layer}): " + ", ".join(f"{name} {tuple(a.shape)}" for name, a in layer_params.items())
           for layer, layer_params in params.items()])


def nonfinite_check_every(k: int, platform: str) -> int | None:
    """Dispatches between mid-epoch checks for a non-finite loss. A check syncs the host with the
    device: cheap on the CPU, where a diverged epoch is long, but it would stall an accelerator's
    queue of fused steps, whose epochs take a second (there, the end of the epoch checks)."""
    return max(1, NONFINITE_CHECK_EVERY // k) if platform == "cpu" else None


def train_epoch(compiled, state: State, train_x, train_y, config: TrainConfig, epoch: int, k: int,
                placement: Placement, run: Run, bar) -> tuple[State, float, int]:
    """One epoch in the seed's batch order, k steps per dispatch: (state, train loss, train correct).
    A non-finite loss stops it through run.check_finite."""
    n = int(train_y.shape[0])
    steps = num_batches(n, config.batch_size)
    check_every = nonfinite_check_every(k, placement.platform)
    totals = zero_totals(placement)
    first_step = int(state.step)
    order = epoch_order(n, config.seed, epoch).astype(np.int32)
    for i, idx in enumerate(epoch_dispatches(order, config.batch_size, k, placement.size), start=1):
        state, totals = compiled[idx.shape](state, totals, train_x, train_y, placement.put_batch(idx))
        if check_every and i % check_every == 0:
            run.check_finite(bad_step(totals, first_step), epoch, steps)
        bar.update(idx.shape[0])
    run.check_finite(bad_step(totals, first_step), epoch, steps)
    return state, float(totals["loss_sum"]) / n, int(totals["correct"])


def bad_step(totals: dict, first_step: int) -> int:
    """The epoch-relative index of the first non-finite loss, or -1 (one host sync)."""
    first_bad = int(totals["first_bad"])
    return -1 if first_bad < 0 else first_bad - first_step


def checkpoint_arrays(state: State) -> tuple[int, dict, dict, dict]:
    """Adam's step, the weights and Adam's two moments in torch's layout, as a training checkpoint stores them."""
    adam_step, exp_avg, exp_avg_sq = adam_state_numpy(state)
    return adam_step, weights_numpy(state), exp_avg, exp_avg_sq


def weights_numpy(state: State) -> dict[str, np.ndarray]:
    """The weights in torch's state_dict layout and names, as NumPy (torch_impl's state_dict_numpy)."""
    return flax_to_torch(jax.device_get({"params": state.params}))
