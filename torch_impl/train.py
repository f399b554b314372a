"""Train and evaluate the PyTorch reference: `python -m torch_impl.train --help`."""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from common.checkpoint import load_weights
from common.config import TrainConfig, build_parser
from common.phases import CLOCK
from common.runner import NONFINITE_CHECK_EVERY, Run, cli, exit_process, report_eval
from data import FashionMNIST, num_batches, to_float
from data.batching import epoch_order
from torch_impl.model import Convnet, count_parameters

EVAL_BATCH_SIZE = 128  # evaluation only; larger batches ran slower on a 2-core CPU (2.0 s at 1000, 0.9 s at 128)
# Memory format of the convolutions per device type: channels_last ran the CPU train step 1.33x
# faster than NCHW (18.7 -> 14.0 ms at batch 64, 2-core CPU, one process, interleaved rounds);
# unmeasured on CUDA and MPS, which keep NCHW.
MEMORY_FORMATS = {"cpu": torch.channels_last}
DEVICES_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; an explicit device must exist on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
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
    if config.extra.get("cuda_graph") == "on" and (world > 1 or resolve_device(config.device).type != "cuda"):
        raise ValueError("--cuda-graph on captures the train step on one CUDA device: it needs --device cuda "
                         "(or auto on a machine with a GPU) and no torchrun; use --cuda-graph auto")
    if world > 1 and config.extra.get("seeds"):
        raise ValueError("--seeds trains in one process; run the sweep without torchrun")
    if world == 1:
        return resolve_device(config.device)
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
    config.extra.update(rank=dist.get_rank(), world_size=dist.get_world_size())
    return device


def build_model(kernel_size: int, device: torch.device, memory_format: torch.memory_format | None = None) -> Convnet:
    """The model on the device, in the memory format that trains fastest there (weights as seeded)."""
    memory_format = memory_format or MEMORY_FORMATS.get(device.type, torch.contiguous_format)
    return Convnet(kernel_size).to(device, memory_format=memory_format)


def create_model(config: TrainConfig, device: torch.device) -> Convnet:
    """The model initialised from config.seed, or from config.init_weights where given."""
    torch.manual_seed(config.seed)
    model = build_model(config.kernel_size, device)
    if config.init_weights:
        load_state_dict_numpy(model, load_weights(config.init_weights, config.kernel_size))
    return model


def make_optimizer(model: Convnet, config: TrainConfig, capturable: bool = False) -> torch.optim.Adam:
    """Adam at its defaults (betas 0.9, 0.999, eps 1e-8, no weight decay), the reference's optimizer;
    capturable keeps its step count on the device, as a CUDA graph needs (torch_impl.cuda_graph)."""
    return torch.optim.Adam(model.parameters(), lr=config.lr, capturable=capturable)


def uses_cuda_graph(config: TrainConfig, device: torch.device) -> bool:
    """--cuda-graph: on, off, or auto (on for a single-process CUDA run)."""
    asked = config.extra.get("cuda_graph", "auto")
    return asked == "on" or (asked == "auto" and device.type == "cuda" and config.extra.get("world_size", 1) == 1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample softmax cross-entropy on integer labels."""
    return F.cross_entropy(logits, labels, reduction="none")


def rank_slice(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    return torch.tensor_split(idx, world)[rank] if world > 1 else idx


def all_sum(*tensors: torch.Tensor) -> None:
    """Sum epoch totals over the ranks of a data-parallel run, in place."""
    if dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)


def first_bad_everywhere(first_bad: torch.Tensor) -> int:
    """The earliest non-finite step on any rank (-1: none); collective, so all ranks stop together."""
    if dist.is_initialized():
        worst = torch.where(first_bad < 0, torch.iinfo(torch.int64).max, first_bad)
        dist.all_reduce(worst, op=dist.ReduceOp.MIN)
        first_bad = torch.where(worst == torch.iinfo(torch.int64).max, -1, worst)
    return int(first_bad)


def to_device(images: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split, once: uint8 (N, 28, 28) -> float (N, 1, 28, 28) on the device, labels int64."""
    return torch.from_numpy(to_float(images)).unsqueeze(1).to(device), torch.from_numpy(labels).to(device)


def state_dict_numpy(model: Convnet) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_state_dict_numpy(model: Convnet, weights: dict[str, np.ndarray]) -> None:
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})


def train_step(model, optimizer, images, labels, denominator: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step; returns the batch's summed loss and correct count as device tensors (no sync).

    The loss is the sum over this batch divided by `denominator` (default: its size, the mean). A
    data-parallel rank holding part of a global batch of n passes n / world_size: DDP averages the
    ranks' gradients, which then equal the gradient of the global batch's mean loss.
    """
    logits = model(images)
    loss_sum = cross_entropy(logits, labels).sum()
    loss = loss_sum / (labels.shape[0] if denominator is None else denominator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    # Accuracy from the same forward pass as the loss: no second pass over the batch.
    return loss_sum.detach(), (logits.argmax(1) == labels).sum()


@torch.no_grad()
def evaluate(model, images, labels, batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, int, np.ndarray]:
    """Mean loss, number correct and predictions over a split, in file order."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    predictions = []
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start : start + batch_size])
        loss_sum += cross_entropy(logits, labels[start : start + batch_size]).sum()
        predictions.append(logits.argmax(1))
    predictions = torch.cat(predictions)
    correct = int((predictions == labels).sum())
    return float(loss_sum) / images.shape[0], correct, predictions.cpu().numpy()


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "numpy": np.__version__}


def environment(device: torch.device) -> dict:
    """What else decides this run's numbers and speed: threads, CUDA and cuDNN, the GPU."""
    env = {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
           else None, "allow_tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                                     "cudnn": torch.backends.cudnn.allow_tf32},
           "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def adam_state_numpy(model: Convnet, optimizer: torch.optim.Adam) -> tuple[int, dict, dict]:
    """Adam's step count and moment estimates, by parameter name, as NumPy."""
    exp_avg, exp_avg_sq, step = {}, {}, 0
    for name, p in model.named_parameters():
        state = optimizer.state[p]
        exp_avg[name] = state["exp_avg"].detach().cpu().numpy()
        exp_avg_sq[name] = state["exp_avg_sq"].detach().cpu().numpy()
        step = int(state["step"])
    return step, exp_avg, exp_avg_sq


def restore(model: Convnet, optimizer: torch.optim.Adam, ckpt) -> None:
    """Weights and Adam state from a training checkpoint, bit for bit."""
    load_state_dict_numpy(model, ckpt.weights)
    saved = optimizer.state_dict()
    saved["state"] = {
        i: {"step": torch.tensor(float(ckpt.adam_step)), "exp_avg": torch.from_numpy(ckpt.exp_avg[name].copy()),
            "exp_avg_sq": torch.from_numpy(ckpt.exp_avg_sq[name].copy())}
        for i, (name, _) in enumerate(model.named_parameters())
    }
    optimizer.load_state_dict(saved)


def train_epoch(net, optimizer, train_x, train_y, config: TrainConfig, epoch: int, run: Run, bar,
                static=None) -> tuple[float, int]:
    """One epoch in the seed's batch order (this rank's share of each batch): train loss and correct count.

    A non-finite loss stops it through run.check_finite, every NONFINITE_CHECK_EVERY steps (one sync
    each); with a captured step (static: torch_impl.cuda_graph.StaticStep), at the epoch's end only,
    so that nothing waits for the host while the GPU's queue of replays runs.
    """
    rank, world = config.extra.get("rank", 0), config.extra.get("world_size", 1)
    net.train()
    device, n = train_x.device, train_x.shape[0]
    steps = num_batches(n, config.batch_size)
    order = torch.from_numpy(epoch_order(n, config.seed, epoch)).to(device)
    if static is not None:
        static.reset()
        for start in range(0, n, config.batch_size):
            static(order[start : start + config.batch_size])
            bar.update()
        run.check_finite(int(static.first_bad), epoch, steps)
        return float(static.loss_sum) / n, int(static.correct)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    for step, start in enumerate(range(0, n, config.batch_size)):
        global_idx = order[start : start + config.batch_size]
        idx = rank_slice(global_idx, rank, world)
        batch_loss, batch_correct = train_step(net, optimizer, train_x[idx], train_y[idx],
                                               denominator=len(global_idx) / world)
        loss_sum += batch_loss
        correct += batch_correct
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(batch_loss), step, first_bad)
        if (step + 1) % NONFINITE_CHECK_EVERY == 0:
            run.check_finite(first_bad_everywhere(first_bad), epoch, steps)
        bar.update()
    run.check_finite(first_bad_everywhere(first_bad), epoch, steps)
    all_sum(loss_sum, correct)
    return float(loss_sum) / n, int(correct)


def checkpoint_arrays(model: Convnet, optimizer: torch.optim.Adam) -> tuple[int, dict, dict, dict]:
    """Adam's step, the weights and Adam's two moments, as a training checkpoint stores them."""
    adam_step, exp_avg, exp_avg_sq = adam_state_numpy(model, optimizer)
    return adam_step, state_dict_numpy(model), exp_avg, exp_avg_sq


def capture_step(model, optimizer, train_x, train_y, config: TrainConfig, run: Run | None = None):
    """The whole train step captured in a CUDA graph (torch_impl.cuda_graph), its time reported as
    the run's compile time."""
    from torch_impl.cuda_graph import StaticStep  # builds on this module

    start = time.perf_counter()
    with CLOCK("compile"):
        static = StaticStep(model, optimizer, train_x, train_y, config.batch_size, capture=True)
    if run is not None:
        run.compiled(time.perf_counter() - start, "the whole train step captured in one CUDA graph; --cuda-graph")
    return static


def train_and_evaluate(config: TrainConfig, dataset: FashionMNIST, device: torch.device) -> dict:
    """Train for config.epochs in the shared batch order, evaluating and checkpointing after every epoch."""
    graphed = uses_cuda_graph(config, device)
    with CLOCK("init"):
        model = create_model(config, device)
        optimizer = make_optimizer(model, config, capturable=graphed)
    world = config.extra.get("world_size", 1)
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
    from torch_impl.sweep import train_seeds  # builds on this module

    parser = build_parser("torch", DEVICES_HELP + "; under torchrun each process takes its local rank's GPU")
    parser.add_argument("--cuda-graph", choices=("auto", "on", "off"), default="auto",
                        help="capture the whole train step (forward, backward, capturable Adam) in one CUDA graph "
                             "and replay it (torch_impl/cuda_graph.py); auto: on for a single-process CUDA run, "
                             "off elsewhere (eager)")
    try:
        return cli(parser, "torch", argv, setup_device, train_and_evaluate, evaluate_checkpoint, train_seeds)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    exit_process(main())
