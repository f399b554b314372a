"""Train and evaluate the PyTorch reference: `python -m torch_impl.train --help`.

The command line on top of the library: torch_impl/model.py is the model, torch_impl/steps.py the
math, torch_impl/training.py the machinery of a run, torch_impl/sweep.py the --seeds engine.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common.checkpoint import load_weights
from common.cli import cli, exit_process
from common.config import TrainConfig, build_parser
from common.phases import CLOCK
from common.runner import Run, report_eval
from data import FashionMNIST, num_batches
from torch_impl.model import count_parameters
from torch_impl.steps import evaluate, make_optimizer
from torch_impl.sweep import train_seeds
from torch_impl.training import (build_model, capture_step, checkpoint_arrays, create_model, environment,
                                 load_state_dict_numpy, restore, state_dict_numpy, to_device, train_epoch,
                                 uses_cuda_graph, versions)

DEVICES_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; an explicit device must exist on this machine. A CUDA
    device always carries its index (cuda -> cuda:0): torch.cuda.set_device refuses one without
    (issue #31: every torch run on a GPU stopped there)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"argument --device: unknown device {name!r}; use {DEVICES_HELP}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"argument --device: {name} is not available here (torch sees "
                         f"{torch.cuda.device_count()} CUDA devices); use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("argument --device: mps is not available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"argument --device: unsupported device {name!r}; use {DEVICES_HELP}")
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", 0)
    return device


def set_numerics(precision: str, deterministic: bool) -> None:
    """One precision policy for every float32 matmul and convolution, and deterministic kernels if
    asked; before any CUDA work. torch's own default mixes them (TF32 for cuDNN convolutions, not
    for matmuls); on a CPU neither setting changes a result."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to be reproducible
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def setup_device(config: TrainConfig) -> torch.device:
    """The device; under torchrun (WORLD_SIZE > 1) also joins the process group: nccl on CUDA, gloo on CPU."""
    set_numerics(config.precision, config.deterministic)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if config.cuda_graph == "on" and (world > 1 or resolve_device(config.device).type != "cuda"):
        raise ValueError("--cuda-graph on captures the train step on one CUDA device: it needs --device cuda "
                         "(or auto on a machine with a GPU) and no torchrun; use --cuda-graph auto")
    if world > 1 and config.seeds:
        raise ValueError("--seeds trains in one process; run the sweep without torchrun")
    if world == 1:
        device = resolve_device(config.device)
        if device.type == "cuda":  # made current, so that device-less calls (synchronize, new streams) use it
            torch.cuda.set_device(device)
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if config.device in ("auto", "cuda") and torch.cuda.is_available():
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = resolve_device("cpu" if config.device == "auto" else config.device), "gloo"
        # Share the cores between the processes of this host instead of oversubscribing them.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    dist.init_process_group(backend)
    config.rank, config.world_size = dist.get_rank(), dist.get_world_size()
    return device


def train_and_evaluate(config: TrainConfig, dataset: FashionMNIST, device: torch.device) -> dict:
    """Train for config.epochs in the shared batch order, evaluating and checkpointing after every epoch."""
    graphed = uses_cuda_graph(config, device)
    with CLOCK("init"):
        model = create_model(config, device)
        optimizer = make_optimizer(model, config.lr, capturable=graphed)
    world = config.world_size
    where = str(device) if world == 1 else f"{device} x {world} processes (DistributedDataParallel, {dist.get_backend()})"
    with CLOCK("write"):
        run = Run(config, "torch", versions(), where, environment(device))
    run.describe_model(str(model), count_parameters(model), dataset)
    ckpt = run.load_resume_checkpoint()
    if ckpt is not None:
        restore(model, optimizer, ckpt)
    # Under torchrun: DDP broadcasts rank 0's weights, then all-reduces (averages) gradients.
    net = model if world == 1 else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    with CLOCK("data"):
        train_x, train_y = to_device(dataset.train_images, dataset.train_labels, device)
        test_x, test_y = to_device(dataset.test_images, dataset.test_labels, device)
    n = train_x.shape[0]
    steps = num_batches(n, config.batch_size)
    static = capture_step(model, optimizer, train_x, train_y, config, run) if graphed else None
    predictions = None
    for epoch in range(1 if ckpt is None else ckpt.epoch + 1, config.epochs + 1):
        with run.epoch_bar(epoch, steps) as bar, CLOCK("train"):
            train_loss, train_correct = train_epoch(net, optimizer, train_x, train_y, config, epoch, run, bar,
                                                    static)
        with CLOCK("evaluate"):
            test_loss, test_correct, predictions = evaluate(model, test_x, test_y)
        run.end_epoch(epoch, train_loss, train_correct, n, test_loss, test_correct, len(test_y))
        with CLOCK("write"):
            arrays = checkpoint_arrays(model, optimizer)
        run.save_checkpoint(epoch, *arrays)
    if predictions is None:  # resumed after the last epoch's checkpoint: nothing left to train
        with CLOCK("evaluate"):
            _, _, predictions = evaluate(model, test_x, test_y)
    return run.finish(state_dict_numpy(model), dataset.test_images, dataset.test_labels, predictions)


def evaluate_checkpoint(config: TrainConfig, dataset: FashionMNIST, device: torch.device) -> dict:
    """--eval-only: test accuracy of a model.safetensors from either framework."""
    model = build_model(config.kernel_size, device)
    load_state_dict_numpy(model, load_weights(config.checkpoint, config.kernel_size))
    test_x, test_y = to_device(dataset.test_images, dataset.test_labels, device)
    loss, correct, _ = evaluate(model, test_x, test_y)
    return report_eval("torch", config.checkpoint, loss, correct, len(test_y))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("torch", DEVICES_HELP + "; under torchrun each process takes its local rank's GPU")
    parser.add_argument("--cuda-graph", choices=("auto", "on", "off"), default=TrainConfig.cuda_graph,
                        help="capture the whole train step (forward, backward, capturable Adam) in one CUDA graph "
                             "and replay it (torch_impl/cuda_graph.py); auto: on for one CUDA device (measured on an H200: "
                             "5.3x eager's epoch, the same accuracy over seeds), off on a CPU and under torchrun; "
                             "on needs one CUDA device and no torchrun")
    try:
        return cli(parser, "torch", argv, setup_device, train_and_evaluate, evaluate_checkpoint, train_seeds)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    exit_process(main())
