"""The run machinery of the PyTorch reference, between the math (torch_impl/steps.py) and the
command line (torch_impl/train.py): the model on its device, the data on the device, one epoch,
the weights and Adam state in and out of checkpoints. Single runs and sweeps both use it.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.distributed as dist

from common.checkpoint import load_weights
from common.config import TrainConfig
from common.phases import CLOCK
from common.runner import NONFINITE_CHECK_EVERY, Run
from data import num_batches, to_float
from data.batching import epoch_order
from torch_impl.cuda_graph import StaticStep
from torch_impl.model import Convnet
from torch_impl.steps import train_step

# Memory format of the convolutions per device type: channels_last ran the CPU train step 1.33x
# faster than NCHW (18.7 -> 14.0 ms at batch 64, 2-core CPU, one process, interleaved rounds);
# unmeasured on CUDA and MPS, which keep NCHW.
MEMORY_FORMATS = {"cpu": torch.channels_last}
# --cuda-graph auto on one CUDA device: the captured step, as measured (issue #31, one H200,
# benchmarks/gpu_check.sh's "graph" stage, docs/performance.md): 4 seeds x 3 epochs each way, no
# metric's mean differs at 95% (Welch; test accuracy 88.96% +- 0.39 captured against 88.93% +- 0.41
# eager), and an epoch takes 0.46 s against eager's 2.43 s (5.3x).
CUDA_GRAPH_BY_DEFAULT = True


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


def uses_cuda_graph(config: TrainConfig, device: torch.device) -> bool:
    """--cuda-graph: on, off, or auto (CUDA_GRAPH_BY_DEFAULT, for a single-process CUDA run). auto
    stays eager under --deterministic: its byte-identical runs were measured eager, the captured
    step's not yet."""
    if config.cuda_graph == "auto":
        return (CUDA_GRAPH_BY_DEFAULT and device.type == "cuda" and config.world_size == 1
                and not config.deterministic)
    return config.cuda_graph == "on"


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
    rank, world = config.rank, config.world_size
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
    start = time.perf_counter()
    with CLOCK("compile"):
        static = StaticStep(model, optimizer, train_x, train_y, config.batch_size, capture=True)
    if run is not None:
        run.compiled(time.perf_counter() - start, "the whole train step captured in one CUDA graph; --cuda-graph")
    return static
