"""torch_impl: the model's shapes and counts, one optimiser step, a tiny run, device and data errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.arch import layer_shapes, param_counts, state_dict_shapes
from common.config import TrainConfig
from tests.helpers import read_run_files, synthetic_dataset, tiny_run
from torch_impl import steps as torch_steps
from torch_impl import train as torch_train
from torch_impl import training as torch_training
from torch_impl.model import Convnet, count_parameters

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_layer_shapes_and_parameter_count(k):
    model = Convnet(k)
    outs = model.layer_outputs(torch.zeros(2, 1, 28, 28))
    assert {name: tuple(t.shape) for name, t in outs.items()} == layer_shapes(k, batch=2)
    assert {n: tuple(p.shape) for n, p in model.state_dict().items()} == state_dict_shapes(k)
    assert count_parameters(model) == param_counts(k)["total"]


def test_closed_form_counts():
    assert param_counts(3) == {"conv1": 320, "conv2": 18496, "dense1": 204928, "dense2": 1290, "total": 225034}
    assert param_counts(5)["total"] == 832 + 51264 + (64 * 4 * 4 * 128 + 128) + 1290


@pytest.mark.parametrize("k", [11, 13, 0])
def test_kernel_without_spatial_extent_is_a_clear_error(k):
    with pytest.raises(ValueError, match="spatial extent|must be >= 1"):
        Convnet(k)


def test_one_step_changes_every_parameter_and_lowers_loss():
    torch.manual_seed(0)
    model = Convnet(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ds = synthetic_dataset(64, 1)
    x, y = torch_training.to_device(ds.train_images, ds.train_labels, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss0 = F.cross_entropy(model(x), y).item()
    loss_sum, correct = torch_steps.train_step(model, optimizer, x, y)
    assert loss_sum.item() == pytest.approx(64 * loss0, rel=1e-6)
    assert 0 <= correct.item() <= 64
    for name, p in model.named_parameters():
        assert not torch.equal(before[name], p.detach()), f"{name} did not change"
    assert F.cross_entropy(model(x), y).item() < loss0


def run_main(tmp_path, *flags):
    return tiny_run(torch_train.main, tmp_path, *flags)


@pytest.mark.realdata
def test_tiny_end_to_end_run_writes_every_file(real_data, tmp_path, capsys):
    out = run_main(tmp_path)
    files = read_run_files(out)
    assert len(files["metrics"]) == 1 and files["metrics"][0]["epoch"] == 1
    assert set(files["weights"]) == set(state_dict_shapes(3))
    assert files["config"]["framework"] == "torch" and files["config"]["lr"] == 1e-3
    assert files["config"]["versions"]["torch"] == torch.__version__
    assert files["summary"]["parameters"] == 225034
    assert "final test accuracy" in capsys.readouterr().out


@pytest.mark.realdata
def test_same_seed_gives_identical_metrics(real_data, tmp_path):
    a = run_main(tmp_path / "a", "--epochs", "2", "--seed", "7")
    b = run_main(tmp_path / "b", "--epochs", "2", "--seed", "7")
    c = run_main(tmp_path / "c", "--epochs", "2", "--seed", "8")
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    assert (a / "metrics.jsonl").read_bytes() != (c / "metrics.jsonl").read_bytes()


def test_train_and_evaluate_on_synthetic_data_learns(tmp_path):
    config = TrainConfig("torch", epochs=3, out_dir=str(tmp_path), quiet=True, seed=1)
    summary = torch_train.train_and_evaluate(config, synthetic_dataset(512, 256), torch.device("cpu"))
    assert summary["test_accuracy"] > 0.5  # 10 classes: chance is 0.1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_cuda_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        torch_train.main(["--device", "cuda"])
    assert e.value.code == 2 and "not available" in capsys.readouterr().err


def test_missing_data_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "torch_impl.train", "--data-dir", str(tmp_path / "nowhere"),
                           "--out-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "lacks train-images-idx3-ubyte" in proc.stderr


class _Checks:
    """A stand-in for the Run that train_epoch reports a non-finite loss to."""

    def __init__(self):
        self.first_bad = []

    def check_finite(self, first_bad_step: int, epoch: int, steps: int) -> None:
        self.first_bad.append(first_bad_step)


def _epochs(static: bool, lr: float = 1e-3, epochs: int = 2):
    """Two epochs of torch_impl.train.train_epoch on 200 synthetic samples (3 full batches of 64 and
    a short one of 8), eagerly or through the static step that a CUDA graph captures."""
    from torch_impl.cuda_graph import StaticStep

    dataset = synthetic_dataset(200, 10)
    config = TrainConfig("torch", lr=lr, seed=1)
    model = torch_training.create_model(config, torch.device("cpu"))
    optimizer = torch_steps.make_optimizer(model, config.lr)
    x, y = torch_training.to_device(dataset.train_images, dataset.train_labels, torch.device("cpu"))
    step = StaticStep(model, optimizer, x, y, config.batch_size, capture=False) if static else None
    checks, results = _Checks(), []
    for epoch in range(1, epochs + 1):
        results.append(torch_training.train_epoch(model, optimizer, x, y, config, epoch, checks, _NoBar(), step))
    return results, torch_training.state_dict_numpy(model), checks.first_bad


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def test_the_static_step_a_cuda_graph_captures_trains_exactly_as_the_eager_step():
    """On a CPU the static-buffer step runs uncaptured: the same metrics and weights, bit for bit."""
    eager, eager_weights, _ = _epochs(static=False)
    static, static_weights, _ = _epochs(static=True)
    assert static == eager
    assert all((static_weights[k] == eager_weights[k]).all() for k in eager_weights)


def test_the_static_step_reports_the_first_non_finite_step():
    eager_checks = _epochs(static=False, lr=1e30, epochs=1)[2]
    static_checks = _epochs(static=True, lr=1e30, epochs=1)[2]
    assert static_checks[-1] == eager_checks[-1] >= 0


def test_cuda_graph_on_needs_a_cuda_device(capsys):
    with pytest.raises(SystemExit) as e:
        torch_train.main(["--cuda-graph", "on", "--device", "cpu"])
    assert e.value.code == 2 and "--cuda-graph on captures the train step on one CUDA device" in capsys.readouterr().err


def test_single_cuda_runs_capture_the_step_unless_told_not_to():
    """Measured on an H200 (issue #31): the captured step changed no metric over 4 seeds (Welch) and
    ran 5.3x eager's epoch, so --cuda-graph auto captures on one CUDA device; never under torchrun
    or on a CPU."""
    cuda = torch.device("cuda", 1)  # a device object only: nothing runs
    assert torch_training.uses_cuda_graph(TrainConfig("torch"), cuda)
    assert not torch_training.uses_cuda_graph(TrainConfig("torch", world_size=2), cuda)
    assert not torch_training.uses_cuda_graph(TrainConfig("torch", deterministic=True), cuda)  # unmeasured
    assert torch_training.uses_cuda_graph(TrainConfig("torch", cuda_graph="on"), cuda)
    assert not torch_training.uses_cuda_graph(TrainConfig("torch", cuda_graph="off"), cuda)
    assert not torch_training.uses_cuda_graph(TrainConfig("torch"), torch.device("cpu"))
