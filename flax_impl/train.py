"""Train and evaluate the JAX/Flax twin: `python -m flax_impl.train --help`."""

from __future__ import annotations

import argparse
import os
import time
import warnings
from functools import partial

import flax
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from common.checkpoint import load_weights
from common.config import TrainConfig, build_parser
from common.phases import CLOCK
from common.runner import NONFINITE_CHECK_EVERY, Run, cli, exit_process, report_eval
from data import FashionMNIST, num_batches, to_float
from data.batching import epoch_order
from flax_impl import compile_cache
from flax_impl.convert import flax_to_torch, torch_to_flax
from flax_impl.model import INITS, count_parameters
from flax_impl.placement import DEVICES_HELP, Placement, as_placement, initialize_distributed, make_placement
from flax_impl.variants import VARIANT_CHOICES, VARIANTS, build_model, resolve_variant

EVAL_BATCH_SIZE = 128  # evaluation only; larger batches ran slower on a 2-core CPU (2.0 s at 1000, 0.9 s at 128)
# Steps fused into one dispatch (a lax.scan over a chunk of batches). Measured on a 2-core CPU
# (make bench, 3 interleaved rounds): a scan of 16 steps ran at 1.09x one step per dispatch (8,318
# against 7,641 samples/s), and a whole 1-epoch run trained in 7.4 s against 8.2 s. On an
# accelerator, per-step dispatch overhead dominates this small model: fuse more (unmeasured here).
STEPS_PER_DISPATCH = {"cpu": 16, "gpu": 64, "tpu": 64}
# XLA options per backend. JAX 0.10 hands XLA:CPU's forward convolutions to YNNPACK, which ran
# this model's 32->64 convolution at 3.7 ms per batch of 64 against 1.7 ms on XLA's Eigen path
# (its weight gradient 6.6 ms against 2.3 ms); an empty list keeps every op on XLA's own path.
COMPILER_OPTIONS = {"cpu": {"xla_cpu_experimental_ynn_fusion_type": ""}}


def resolve_device(name: str) -> jax.Device:
    """One device by name (auto: JAX's default device)."""
    return make_placement(name, 1).devices[0]


def set_numerics(precision: str, deterministic: bool) -> None:
    """One precision policy for every float32 matmul and convolution (JAX's default on GPUs is
    TF32-class), and XLA's deterministic GPU ops if asked; before the backend starts."""
    jax.config.update("jax_default_matmul_precision", "highest" if precision == "highest" else "tensorfloat32")
    if deterministic and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()


def setup_placement(config: TrainConfig) -> Placement:
    """Connect to other hosts if asked, then choose the devices (CLI errors as ValueError)."""
    set_numerics(config.precision, config.deterministic)
    extra = config.extra
    config.extra["compilation_cache"] = compile_cache.enable(extra.get("compilation_cache"))
    initialize_distributed(extra.get("coordinator_address"), extra.get("num_processes"), extra.get("process_id"))
    config.extra["rank"] = jax.process_index()
    if extra.get("sweep", "auto") != "auto" and not extra.get("seeds"):
        raise ValueError(f"--sweep {extra['sweep']} says how a --seeds sweep trains; add --seeds (e.g. --seeds 0-7)")
    if extra.get("seeds") and (extra.get("num_devices") or 1) > 1:
        raise ValueError("--seeds trains on one device (a vmapped sweep holds every seed there); "
                         "drop --num-devices, or train the seeds as separate data-parallel runs")
    placement = make_placement(config.device, extra.get("num_devices") or (1 if extra.get("seeds") else 0))
    config.extra["variant"] = resolve_variant(extra.get("variant", "auto"), placement.platform)
    return placement


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-sample softmax cross-entropy on integer labels, as torch.nn.functional.cross_entropy."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """torch.optim.Adam at its defaults. Plain Python floats, not optax.inject_hyperparams: its float32 b2
    would make 1 - b2, and so Adam's second moment, differ from torch's by 1.3e-5 (test_optimizer)."""
    return optax.adam(learning_rate=config.lr, b1=0.9, b2=0.999, eps=1e-8)


def model_variant(config: TrainConfig, platform: str) -> str:
    return resolve_variant(config.extra.get("variant", "auto"), platform)


def create_train_state(config: TrainConfig, where: jax.Device | Placement) -> TrainState:
    """Parameters initialised from config.seed (or config.init_weights) and the optimizer's state."""
    placement = as_placement(where)
    model = build_model(model_variant(config, placement.platform), config.kernel_size, config.extra.get("init", "torch"))
    tx = make_optimizer(config)

    def init(key):
        params = model.init(key, jnp.zeros((1, 28, 28, 1), jnp.float32))["params"]
        return TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    # One jit: op by op, init compiled ~70 small XLA programs (7 s of a 25 s one-epoch run on a 2-core CPU).
    with jax.default_device(placement.local_device):
        key = jax.random.key(config.seed)
        state = compile_program(jax.jit(init), (key,), placement.platform)(key)
    if config.init_weights:
        state = state.replace(params=torch_to_flax(load_weights(config.init_weights, config.kernel_size))["params"])
    return placement.replicate(state)


def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One Adam step, a pure function: (state, batch) -> (state, metrics); metrics stay on device.

    The loss is the mean over the batch's samples; labels < 0 mark padding, which counts for
    nothing (a data-parallel batch that does not split evenly over the devices is padded).
    """
    labels = batch["labels"]
    valid = labels >= 0

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, batch["images"])
        loss_sum = jnp.where(valid, cross_entropy(logits, jnp.maximum(labels, 0)), 0.0).sum()
        return loss_sum / valid.sum(), (logits, loss_sum)

    (_, (logits, loss_sum)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {
        "loss_sum": loss_sum,
        # Accuracy from the same forward pass as the loss.
        "correct": jnp.sum((jnp.argmax(logits, -1) == labels) & valid),
    }
    return state.apply_gradients(grads=grads), metrics


def eval_step(state: TrainState, batch: dict) -> dict:
    """Summed loss, correct count and predictions of a batch; labels < 0 mark padding."""
    logits = state.apply_fn({"params": state.params}, batch["images"])
    valid = batch["labels"] >= 0
    predictions = jnp.argmax(logits, -1)
    losses = cross_entropy(logits, jnp.maximum(batch["labels"], 0))
    return {
        "loss_sum": jnp.sum(jnp.where(valid, losses, 0.0)),
        "correct": jnp.sum(predictions == batch["labels"]),
        "predictions": predictions,
    }


@partial(jax.jit, donate_argnums=(0, 1))
def train_steps(state: TrainState, totals: dict, images: jax.Array, labels: jax.Array, idx: jax.Array):
    """idx (K, B): K train steps in one dispatch on batches gathered from the device-resident set
    (an index < 0 is padding)."""

    def body(carry, batch_idx):
        state, totals = carry
        step = state.step
        batch = {"images": images[batch_idx], "labels": jnp.where(batch_idx >= 0, labels[batch_idx], -1)}
        state, metrics = train_step(state, batch)
        bad = (totals["first_bad"] < 0) & ~jnp.isfinite(metrics["loss_sum"])
        totals = {"loss_sum": totals["loss_sum"] + metrics["loss_sum"],
                  "correct": totals["correct"] + metrics["correct"],
                  "first_bad": jnp.where(bad, step, totals["first_bad"])}
        return (state, totals), None

    if idx.shape[0] == 1:  # no loop at all: XLA:CPU runs a bare step fastest
        return body((state, totals), idx[0])[0]
    return jax.lax.scan(body, (state, totals), idx)[0]


def evaluate_all(state: TrainState, test_x: jax.Array, test_y: jax.Array) -> dict:
    """The whole padded test set in one dispatch: eval_step mapped over batches of EVAL_BATCH_SIZE."""
    images = test_x.reshape(-1, EVAL_BATCH_SIZE, *test_x.shape[1:])  # (batches, 128, 28, 28, 1)
    labels = test_y.reshape(-1, EVAL_BATCH_SIZE)
    outs = jax.lax.map(lambda b: eval_step(state, {"images": b[0], "labels": b[1]}), (images, labels))
    return {"loss_sum": outs["loss_sum"].sum(), "correct": outs["correct"].sum(),
            "predictions": outs["predictions"].reshape(-1)}


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
    """Compile with the backend's XLA options; one that this jaxlib does not know is dropped with a
    warning (older and newer jaxlibs differ), never a failed run."""
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
                COMPILER_OPTIONS[platform].pop(k, None)
                options.pop(k)


def compile_program(jitted, args: tuple, platform: str):
    """A jitted function compiled for these arguments with the backend's options, through the
    compilation cache (a hit skips lowering and XLA: flax_impl/compile_cache.py)."""
    return compile_cache.load_or_compile(jitted.trace(*args), partial(compile_with_options, platform=platform),
                                         COMPILER_OPTIONS.get(platform))


def compile_train_steps(state, images, labels, shape: tuple[int, int], placement: Placement):
    """train_steps compiled for one index shape (steps, batch) with the backend's options."""
    idx = jax.ShapeDtypeStruct(shape, jnp.int32, sharding=placement.batch)
    return compile_program(train_steps, (state, zero_totals(placement), images, labels, idx), placement.platform)


def compile_all(state, images, labels, test_x, test_y, n, batch_size, k, placement: Placement):
    """Compile every train and eval shape ahead of time, so no epoch pays for compilation."""
    compiled = {shape: compile_train_steps(state, images, labels, shape, placement)
                for shape in epoch_plan(n, batch_size, k, placement.size)}
    compiled["eval"] = compile_eval(state, test_x, test_y, placement)
    return compiled


def compile_eval(state, test_x, test_y, placement: Placement):
    """evaluate_all compiled for the padded test set with the backend's options."""
    return compile_program(jax.jit(evaluate_all), (state, test_x, test_y), placement.platform)


def evaluate(eval_fn, state: TrainState, test_x: jax.Array, test_y: jax.Array, num_test: int):
    """Mean loss, number correct and predictions over the (padded) test set, in file order: one
    dispatch and one fetch (79 of each, batch by batch, took 0.45 s of a 2-core CPU's epoch)."""
    out = jax.device_get(eval_fn(state, test_x, test_y))
    return float(out["loss_sum"]) / num_test, int(out["correct"]), np.asarray(out["predictions"])[:num_test]


def versions() -> dict[str, str]:
    return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__}


def environment(placement: Placement) -> dict:
    """What else decides this run's numbers and speed: jaxlib, the backend's runtime, the devices, threads."""
    import jaxlib

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
    cpu-tuned variant writes those gradients as plain convolutions and scans well."""
    if config.extra.get("steps_per_dispatch"):
        return config.extra["steps_per_dispatch"]
    if platform == "cpu" and model_variant(config, platform) == "idiomatic":
        return 1
    return STEPS_PER_DISPATCH.get(platform, 1)


def adam_state(state: TrainState) -> optax.ScaleByAdamState:
    """Adam's step count and moment estimates, found by name in the optimizer's state."""
    return optax.tree_utils.tree_get(state.opt_state, "ScaleByAdamState")


def adam_state_numpy(state: TrainState) -> tuple[int, dict, dict]:
    """Adam's step count and moment estimates in torch's layout and names, as NumPy."""
    adam = adam_state(state)
    return (int(adam.count), flax_to_torch(jax.device_get({"params": adam.mu})),
            flax_to_torch(jax.device_get({"params": adam.nu})))


def restore(state: TrainState, ckpt, placement: Placement) -> TrainState:
    """Weights and Adam state from a training checkpoint (torch layout), bit for bit."""
    def put(tree):
        return placement.replicate(torch_to_flax(tree)["params"])

    def count():  # a buffer each: the counts are donated separately
        return placement.put(np.asarray(ckpt.adam_step, np.int32), placement.replicated)

    adam = adam_state(state)._replace(count=count(), mu=put(ckpt.exp_avg), nu=put(ckpt.exp_avg_sq))
    opt_state = optax.tree_utils.tree_set(state.opt_state, ScaleByAdamState=adam)
    return state.replace(step=count(), params=put(ckpt.weights), opt_state=opt_state)


def model_summary(config: TrainConfig, params: dict, platform: str) -> str:
    """The model's class, settings and parameter shapes, as the trainer prints them."""
    variant = model_variant(config, platform)
    return "\n".join(
        [f"{VARIANTS[variant].__name__}(conv2d_kernel_size={config.kernel_size}, "
         f"init={config.extra.get('init', 'torch')!r}), NHWC; variant {variant} (--variant)"]
        + [f"  ({layer}): " + ", ".join(f"{name} {tuple(a.shape)}" for name, a in layer_params.items())
           for layer, layer_params in params.items()])


def nonfinite_check_every(k: int, platform: str) -> int | None:
    """Dispatches between mid-epoch checks for a non-finite loss. A check syncs the host with the
    device: cheap on the CPU, where a diverged epoch is long, but it would stall an accelerator's
    queue of fused steps, whose epochs take a second (there, the end of the epoch checks)."""
    return max(1, NONFINITE_CHECK_EVERY // k) if platform == "cpu" else None


def train_epoch(compiled, state: TrainState, train_x, train_y, config: TrainConfig, epoch: int, k: int,
                placement: Placement, run: Run, bar) -> tuple[TrainState, float, int]:
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


def checkpoint_arrays(state: TrainState) -> tuple[int, dict, dict, dict]:
    """Adam's step, the weights and Adam's two moments in torch's layout, as a training checkpoint stores them."""
    adam_step, exp_avg, exp_avg_sq = adam_state_numpy(state)
    return adam_step, weights_numpy(state), exp_avg, exp_avg_sq


def weights_numpy(state: TrainState) -> dict[str, np.ndarray]:
    """The weights in torch's state_dict layout and names, as NumPy (torch_impl's state_dict_numpy)."""
    return flax_to_torch(jax.device_get({"params": state.params}))


def train_and_evaluate(config: TrainConfig, dataset: FashionMNIST, where: jax.Device | Placement) -> dict:
    """Train for config.epochs in the shared batch order, evaluating and checkpointing after every epoch."""
    placement = as_placement(where)
    with CLOCK("init"):
        state = create_train_state(config, placement)
    k = steps_per_dispatch(config, placement.platform)
    with CLOCK("write"):
        run = Run(config, "flax", versions(), placement.describe(), environment(placement))
    run.describe_model(model_summary(config, state.params, placement.platform), count_parameters(state.params),
                       dataset)
    ckpt = run.load_resume_checkpoint()
    if ckpt is not None:
        state = restore(state, ckpt, placement)
    with CLOCK("data"):
        train_x, train_y, test_x, test_y = dataset_on_device(dataset, placement)
    n, num_test = len(dataset.train_labels), len(dataset.test_labels)
    steps = num_batches(n, config.batch_size)
    start = time.perf_counter()
    with CLOCK("compile"), compile_cache.CacheCounter() as cache:
        compiled = compile_all(state, train_x, train_y, test_x, test_y, n, config.batch_size, k, placement)
    run.compiled(time.perf_counter() - start, cache.describe())
    predictions = None
    for epoch in range(1 if ckpt is None else ckpt.epoch + 1, config.epochs + 1):
        with run.epoch_bar(epoch, steps) as bar, CLOCK("train"):
            state, train_loss, train_correct = train_epoch(compiled, state, train_x, train_y, config, epoch, k,
                                                           placement, run, bar)
        with CLOCK("evaluate"):
            test_loss, test_correct, predictions = evaluate(compiled["eval"], state, test_x, test_y, num_test)
        run.end_epoch(epoch, train_loss, train_correct, n, test_loss, test_correct, num_test)
        with CLOCK("write"):
            arrays = checkpoint_arrays(state)
        run.save_checkpoint(epoch, *arrays)
    if predictions is None:  # resumed after the last epoch's checkpoint: nothing left to train
        with CLOCK("evaluate"):
            _, _, predictions = evaluate(compiled["eval"], state, test_x, test_y, num_test)
    with CLOCK("write"):
        weights = weights_numpy(state)
    return run.finish(weights, dataset.test_images, dataset.test_labels, predictions)


def bad_step(totals: dict, first_step: int) -> int:
    """The epoch-relative index of the first non-finite loss, or -1 (one host sync)."""
    first_bad = int(totals["first_bad"])
    return -1 if first_bad < 0 else first_bad - first_step


def evaluate_checkpoint(config: TrainConfig, dataset: FashionMNIST, where: jax.Device | Placement) -> dict:
    """--eval-only: test accuracy of a model.safetensors from either framework."""
    placement = as_placement(where)
    state = create_train_state(config, placement)
    params = placement.replicate(torch_to_flax(load_weights(config.checkpoint, config.kernel_size))["params"])
    state = state.replace(params=params)
    test_x, test_y = device_arrays(dataset.test_images, dataset.test_labels, placement, pad_to=EVAL_BATCH_SIZE)
    eval_fn = compile_eval(state, test_x, test_y, placement)
    loss, correct, _ = evaluate(eval_fn, state, test_x, test_y, len(dataset.test_labels))
    return report_eval("flax", config.checkpoint, loss, correct, len(dataset.test_labels))


def main(argv: list[str] | None = None) -> int:
    from flax_impl.sweep import SWEEP_MODES, train_seeds  # builds on this module

    parser = build_parser("flax", DEVICES_HELP)
    parser.add_argument("--init", choices=INITS, default="torch",
                        help="initialisation: torch's default distributions, or Flax's (lecun_normal, zero bias)")
    parser.add_argument("--variant", choices=VARIANT_CHOICES, default="auto",
                        help="the model: idiomatic (flax_impl/model.py: nn.Conv, nn.max_pool), cpu-tuned (the same "
                             "parameters, custom-VJP ops measured faster on XLA:CPU; reverse-mode AD only), or auto: "
                             "the faster on this backend (cpu-tuned on the CPU, idiomatic elsewhere)")
    parser.add_argument("--steps-per-dispatch", type=int, default=0,
                        help="train steps fused into one jitted lax.scan; 0 = per backend "
                             f"({', '.join(f'{k} {v}' for k, v in STEPS_PER_DISPATCH.items())}; 1 for the "
                             "idiomatic model on a CPU)")
    parser.add_argument("--num-devices", type=int, default=0,
                        help="data-parallel over the first N devices of the platform; 0 = all of them")
    parser.add_argument("--coordinator-address", default=None,
                        help="several hosts: host:port of process 0, for jax.distributed.initialize")
    parser.add_argument("--num-processes", type=int, default=None, help="several hosts: how many processes")
    parser.add_argument("--process-id", type=int, default=None, help="several hosts: this process's index")
    parser.add_argument("--compilation-cache", default=argparse.SUPPRESS, metavar="DIR",
                        help="JAX's persistent compilation cache: a folder, or 'off' (default: "
                             f"${compile_cache.ENV}, else $XDG_CACHE_HOME/fashion-parity/jax)")
    parser.add_argument("--sweep", choices=SWEEP_MODES, default="auto",
                        help="with --seeds: train the seeds together (vmap: one jax.vmap'ed step over the stacked "
                             "train states) or one after another (sequential: each seed's own step, bit for bit its "
                             "--seed run); auto: the faster on this backend (sequential on the CPU, vmap elsewhere)")
    return cli(parser, "flax", argv, setup_placement, train_and_evaluate, evaluate_checkpoint, train_seeds)


if __name__ == "__main__":
    exit_process(main())
