"""The set-up of every path that only runs on CUDA, checked on a CPU with CUDA faked present.

On a machine without a GPU, torch checks a call's arguments before it looks for a driver, so with
`torch.cuda.is_available` and `device_count` faked, a set-up that is right gets as far as the
driver ("Found no NVIDIA driver") and one that is wrong stops at torch's own argument check. What
remains GPU-only (the capture itself, nccl's collectives, cuDNN's deterministic kernels) is run by
benchmarks/gpu_check.sh on a GPU machine.
"""

from __future__ import annotations

import os
import types

import pytest
import torch

from common.config import TrainConfig
from torch_impl import train as torch_train

# What torch says once every argument was accepted and it looks for the driver (a CPU machine).
REACHED_THE_DRIVER = "NVIDIA driver|CUDA driver|no CUDA GPUs|Torch not compiled with CUDA"


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA present with two devices, as far as Python's checks can tell; no driver behind it."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: benchmarks/gpu_check.sh runs these paths for real")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in ("WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    # torch.use_deterministic_algorithms and the TF32 switches are process-wide: put them back.
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.use_deterministic_algorithms(saved[0])
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = saved[1:5]
    if saved[5] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def reaches_the_driver(call):
    """The call passes every argument check and stops only where a real GPU is needed."""
    with pytest.raises(RuntimeError, match=REACHED_THE_DRIVER):
        call()


@pytest.mark.parametrize("device", ["auto", "cuda", "cuda:0", "cuda:1"])
def test_a_single_process_run_gets_past_cuda_set_up(fake_cuda, device):
    """Issue #31: torch.cuda.set_device(torch.device("cuda")) was refused ("Expected a torch.device
    with a specified index"), so no torch run trained on a GPU."""
    reaches_the_driver(lambda: torch_train.setup_device(TrainConfig("torch", device=device)))


@pytest.mark.parametrize("name, index", [("auto", 0), ("cuda", 0), ("cuda:0", 0), ("cuda:1", 1)])
def test_a_cuda_device_always_carries_its_index(fake_cuda, name, index):
    assert torch_train.resolve_device(name) == torch.device("cuda", index)


def test_a_cuda_device_beyond_the_count_is_refused(fake_cuda):
    with pytest.raises(ValueError, match="cuda:2 is not available here"):
        torch_train.resolve_device("cuda:2")


@pytest.mark.parametrize("flags", [dict(cuda_graph="on"), dict(deterministic=True), dict(precision="tf32")])
def test_the_captured_step_and_the_numerics_flags_get_past_set_up(fake_cuda, flags):
    config = TrainConfig("torch", device="cuda", **flags)
    reaches_the_driver(lambda: torch_train.setup_device(config))
    if flags.get("deterministic"):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    if flags.get("precision") == "tf32":
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_the_captured_step_is_refused_without_a_gpu_in_words(monkeypatch):
    with pytest.raises(ValueError, match="--cuda-graph on captures the train step on one CUDA device"):
        torch_train.setup_device(TrainConfig("torch", device="cpu", cuda_graph="on"))


def test_the_captured_step_builds_capturable_adam_on_the_device():
    """capturable Adam's own check (its step on the parameters' device) accepts the trainer's optimizer."""
    from torch_impl.steps import make_optimizer
    from torch_impl.model import Convnet

    optimizer = make_optimizer(Convnet(3), 1e-3, capturable=True)
    assert optimizer.param_groups[0]["capturable"] is True


@pytest.mark.parametrize("local_rank", [0, 1])
def test_data_parallel_over_nccl_takes_its_local_rank_gpu(fake_cuda, monkeypatch, local_rank):
    """Under torchrun each process sets its own GPU before joining the nccl group."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    chosen = []
    real = torch.cuda.set_device

    def spy(device):
        chosen.append(device)
        return real(device)

    monkeypatch.setattr(torch.cuda, "set_device", spy)
    reaches_the_driver(lambda: torch_train.setup_device(TrainConfig("torch", device="auto")))
    assert chosen == [torch.device("cuda", local_rank)]


def test_the_benchmarks_cuda_rows_get_past_set_up(fake_cuda):
    """Every torch row of the step benchmark starts with the trainer's setup_device."""
    from benchmarks.rows import torch_rows

    args = types.SimpleNamespace(warmup=1, steps=1, repeats=1)
    for row in ("torch", "torch-graph"):
        reaches_the_driver(lambda: torch_rows(row, "cuda", args))
