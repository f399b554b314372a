"""Train and evaluate the JAX/Flax twin: `python -m flax_impl.train --help`.

The command line on top of the library: flax_impl/model.py is the model, flax_impl/steps.py the
math, flax_impl/training.py the machinery of a run, flax_impl/sweep.py the --seeds engines.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from common.checkpoint import load_weights
from common.cli import cli, exit_process
from common.config import TrainConfig, build_parser
from common.phases import CLOCK
from common.runner import Run, report_eval
from data import FashionMNIST, num_batches
from flax_impl import compile_cache
from flax_impl.convert import torch_to_flax
from flax_impl.inits import INITS
from flax_impl.model import count_parameters
from flax_impl.placement import DEVICES_HELP, Placement, as_placement, initialize_distributed, make_placement
from flax_impl.steps import EVAL_BATCH_SIZE
from flax_impl.sweep import SWEEP_MODES, train_seeds
from flax_impl.training import (APIS, STEPS_PER_DISPATCH, checkpoint_arrays, compile_all, compile_eval,
                                create_train_state, dataset_on_device, device_arrays, environment, evaluate, model_summary, restore,
                                steps_per_dispatch, train_epoch, versions, weights_numpy, with_params)
from flax_impl.variants import VARIANT_CHOICES, resolve_variant


def set_numerics(precision: str, deterministic: bool) -> None:
    """One precision policy for every float32 matmul and convolution (JAX's default on GPUs is
    TF32-class), and XLA's deterministic GPU ops if asked; before the backend starts."""
    jax.config.update("jax_default_matmul_precision", "highest" if precision == "highest" else "tensorfloat32")
    if deterministic and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()


def setup_placement(config: TrainConfig) -> Placement:
    """Connect to other hosts if asked, then choose the devices (CLI errors as ValueError)."""
    set_numerics(config.precision, config.deterministic)
    config.compilation_cache = compile_cache.enable(config.compilation_cache)
    initialize_distributed(config.coordinator_address, config.num_processes, config.process_id)
    config.rank = jax.process_index()
    if config.sweep != "auto" and not config.seeds:
        raise ValueError(f"--sweep {config.sweep} says how a --seeds sweep trains; add --seeds (e.g. --seeds 0-7)")
    if config.seeds and (config.num_devices or 1) > 1:
        raise ValueError("--seeds trains on one device (a vmapped sweep holds every seed there); "
                         "drop --num-devices, or train the seeds as separate data-parallel runs")
    placement = make_placement(config.device, config.num_devices or (1 if config.seeds else 0))
    config.variant = resolve_variant(config.variant, placement.platform)
    return placement


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


def evaluate_checkpoint(config: TrainConfig, dataset: FashionMNIST, where: jax.Device | Placement) -> dict:
    """--eval-only: test accuracy of a model.safetensors from either framework."""
    placement = as_placement(where)
    state = create_train_state(config, placement)
    params = placement.replicate(torch_to_flax(load_weights(config.checkpoint, config.kernel_size))["params"])
    state = with_params(state, params)
    test_x, test_y = device_arrays(dataset.test_images, dataset.test_labels, placement, pad_to=EVAL_BATCH_SIZE)
    eval_fn = compile_eval(state, test_x, test_y, placement)
    loss, correct, _ = evaluate(eval_fn, state, test_x, test_y, len(dataset.test_labels))
    return report_eval("flax", config.checkpoint, loss, correct, len(dataset.test_labels))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("flax", DEVICES_HELP)
    d = TrainConfig("flax")
    parser.add_argument("--api", choices=APIS, default=d.api,
                        help="the Flax API of the model and its train step: linen (flax_impl/model.py, functional: "
                             "params apart from the module) or nnx (flax_impl/nnx_model.py and nnx_steps.py: "
                             "nnx.Module, nnx.Optimizer); the same model, math, flags and run files")
    parser.add_argument("--init", choices=INITS, default=d.init,
                        help="initialisation: torch's default distributions, or Flax's (lecun_normal, zero bias)")
    parser.add_argument("--variant", choices=VARIANT_CHOICES, default=d.variant,
                        help="the model: idiomatic (flax_impl/model.py: nn.Conv, nn.max_pool), custom-vjp (the same "
                             "parameters, convolutions and max pools as custom-VJP ops, measured faster on a CPU and "
                             "on an H200; reverse-mode AD only), or auto: the faster on this backend as measured "
                             "(custom-vjp on cpu and gpu, idiomatic elsewhere)")
    parser.add_argument("--steps-per-dispatch", type=int, default=d.steps_per_dispatch,
                        help="train steps fused into one jitted lax.scan; 0 = per backend "
                             f"({', '.join(f'{k} {v}' for k, v in STEPS_PER_DISPATCH.items())}; 1 for the "
                             "idiomatic model on a CPU)")
    parser.add_argument("--num-devices", type=int, default=d.num_devices,
                        help="data-parallel over the first N devices of the platform; 0 = all of them")
    parser.add_argument("--coordinator-address", default=d.coordinator_address,
                        help="several hosts: host:port of process 0, for jax.distributed.initialize")
    parser.add_argument("--num-processes", type=int, default=d.num_processes, help="several hosts: how many processes")
    parser.add_argument("--process-id", type=int, default=d.process_id, help="several hosts: this process's index")
    parser.add_argument("--compilation-cache", default=argparse.SUPPRESS, metavar="DIR",
                        help="JAX's persistent compilation cache: a folder, or 'off' (default: "
                             f"${compile_cache.ENV}, else $XDG_CACHE_HOME/fashion-parity/jax, made private; a "
                             "folder other users can write is not used)")
    parser.add_argument("--sweep", choices=SWEEP_MODES, default=d.sweep,
                        help="with --seeds: train the seeds together (vmap: one jax.vmap'ed step over the stacked "
                             "train states) or one after another (sequential: each seed's own step, bit for bit its "
                             "--seed run); auto: the faster on this backend (sequential on the CPU, vmap elsewhere)")
    return cli(parser, "flax", argv, setup_placement, train_and_evaluate, evaluate_checkpoint, train_seeds)


if __name__ == "__main__":
    exit_process(main())
