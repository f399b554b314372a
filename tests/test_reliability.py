"""Interrupted runs, bad checkpoints, divergence and bad data, in both frameworks."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from common.checkpoint import save_weights
from common.resume import CHECKPOINT, peek
from data import FILES
from data.fashion_mnist import file_in

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ["torch", "flax"]
# 4,000 samples: a warm flax_impl run now ends ~1 s after its first checkpoint at 2,000 (the cache loads its
# programs, the exit skips the last collection), and a loaded CI machine once signalled it too late.
SMALL = ["--train-size", "4000", "--test-size", "500", "--epochs", "3", "--seed", "3", "--quiet"]


def cli(framework: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"{framework}_impl.train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, **kwargs)


def one_line_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, real_data):
    """A reference run per framework, never interrupted."""
    runs = {}
    for fw in FRAMEWORKS:
        out = tmp_path_factory.mktemp(f"ref-{fw}")
        proc = cli(fw, *SMALL, "--out-dir", str(out))
        assert proc.returncode == 0, proc.stderr
        runs[fw] = out
    return runs


def kill_after_first_epoch(framework: str, out: Path, sig: int, *flags: str) -> subprocess.CompletedProcess:
    """Start a run (flags: SMALL unless given), wait for its epoch-1 checkpoint, then signal it in epoch 2."""
    proc = subprocess.Popen([sys.executable, "-m", f"{framework}_impl.train", *(flags or SMALL), "--out-dir", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        meta = peek(out / CHECKPOINT)
        if meta is not None and int(meta["epoch"]) >= 1:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.realdata
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_and_resumed_equals_uninterrupted(framework, sig, uninterrupted, tmp_path):
    out = tmp_path / "run"
    killed = kill_after_first_epoch(framework, out, sig)
    assert killed.returncode != 0, "the run finished before it could be interrupted"
    assert not (out / "summary.json").exists()
    done = int(peek(out / CHECKPOINT)["epoch"])
    assert 1 <= done < 3
    if sig == signal.SIGINT:
        assert killed.returncode == 130
        assert f"epoch {done} of 3 done" in killed.stderr and "--resume" in killed.stderr
        assert str(out / CHECKPOINT) in killed.stderr
    # Without --resume the unfinished run is protected.
    assert "--resume" in one_line_error(cli(framework, *SMALL, "--out-dir", str(out)))
    resumed = cli(framework, *SMALL, "--out-dir", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    ref = uninterrupted[framework]
    assert (out / "metrics.jsonl").read_bytes() == (ref / "metrics.jsonl").read_bytes()
    a, b = load_file(out / "model.safetensors"), load_file(ref / "model.safetensors")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.realdata
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_finished_run_is_not_overwritten(framework, uninterrupted):
    ref = uninterrupted[framework]
    before = (ref / "model.safetensors").read_bytes()
    msg = one_line_error(cli(framework, *SMALL, "--out-dir", str(ref)))
    assert "finished run" in msg and "--overwrite" in msg
    assert (ref / "model.safetensors").read_bytes() == before


@pytest.mark.realdata
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_mismatched_resume_is_refused_naming_what_differs(framework, uninterrupted, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / CHECKPOINT).write_bytes((uninterrupted[framework] / CHECKPOINT).read_bytes())  # epoch 3 of 3
    flags = [f if f != "3" else "5" for f in SMALL]  # --epochs 5 --seed 5 instead of 3 and 3
    msg = one_line_error(cli(framework, *flags, "--lr", "0.01", "--batch-size", "32", "--out-dir", str(out),
                             "--resume"))
    assert "different hyperparameters" in msg
    for name in ("seed", "batch_size"):
        assert f"{name} (checkpoint" in msg
    for name in ("epochs", "lr"):  # a resume may change these (tests/test_run_safety.py)
        assert f" {name} (checkpoint" not in msg
    assert "kernel_size" not in msg  # only what differs is named
    # Refused on the finished run itself: its files are left exactly as they were.
    ref = uninterrupted[framework]
    before = {name: (ref / name).read_bytes() for name in ("config.json", "metrics.jsonl", CHECKPOINT)}
    one_line_error(cli(framework, *flags, "--out-dir", str(ref), "--resume"))
    assert {name: (ref / name).read_bytes() for name in before} == before


@pytest.mark.realdata
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_truncated_training_checkpoint(framework, uninterrupted, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    payload = (uninterrupted[framework] / CHECKPOINT).read_bytes()
    (out / CHECKPOINT).write_bytes(payload[: len(payload) // 2])
    msg = one_line_error(cli(framework, *SMALL, "--out-dir", str(out), "--resume"))
    assert "not a readable safetensors file" in msg


@pytest.mark.realdata
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bad_weight_checkpoints_are_named(framework, uninterrupted, tmp_path):
    good = uninterrupted[framework] / "model.safetensors"
    msg = one_line_error(cli(framework, "--eval-only", "--checkpoint", str(good), "--kernel-size", "5"))
    assert "conv1.weight has shape (32, 1, 3, 3), expected (32, 1, 5, 5)" in msg and "--kernel-size 3" in msg
    weights = load_file(good)
    missing = dict(weights)
    del missing["dense2.bias"]
    save_weights(tmp_path / "missing.safetensors", missing, {})
    msg = one_line_error(cli(framework, "--eval-only", "--checkpoint", str(tmp_path / "missing.safetensors")))
    assert "missing tensors ['dense2.bias']" in msg
    extra = {**weights, "dense3.weight": np.zeros((2, 2), np.float32)}
    save_weights(tmp_path / "extra.safetensors", extra, {})
    msg = one_line_error(cli(framework, "--eval-only", "--checkpoint", str(tmp_path / "extra.safetensors")))
    assert "unexpected tensors ['dense3.weight']" in msg
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:1000])
    msg = one_line_error(cli(framework, "--eval-only", "--checkpoint", str(tmp_path / "cut.safetensors")))
    assert "truncated" in msg
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04\x95 this is a pickle, never unpickled")
    msg = one_line_error(cli(framework, "--eval-only", "--checkpoint", str(tmp_path / "pickle.pt")))
    assert "not a readable safetensors file" in msg


@pytest.mark.realdata
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_absurd_learning_rate_stops_with_a_clear_message(framework, tmp_path):
    out = tmp_path / "run"
    msg = one_line_error(cli(framework, *SMALL, "--lr", "1e30", "--out-dir", str(out)))
    assert "non-finite at epoch 1, step" in msg and "--lr" in msg
    assert not (out / "model.safetensors").exists() and not (out / CHECKPOINT).exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_divergence_keeps_the_last_good_checkpoint(framework, tmp_path, monkeypatch):
    """Epoch 1 trains normally, then the loss turns NaN in epoch 2: the epoch-1 checkpoint survives."""
    from common.config import TrainConfig
    from common.runner import NonFiniteLoss
    from tests.helpers import synthetic_dataset

    ds = synthetic_dataset(256, 64)  # 4 steps per epoch at batch 64
    config = TrainConfig(framework, epochs=3, out_dir=str(tmp_path), quiet=True)
    if framework == "torch":
        import torch

        from torch_impl import train as trainer
        from torch_impl import training as module  # where train_epoch finds train_step

        real_step, calls = module.train_step, []

        def poisoned(model, optimizer, images, labels, **kwargs):
            calls.append(1)
            if len(calls) == 6:  # epoch 2, step 2
                images = images * float("nan")
            return real_step(model, optimizer, images, labels, **kwargs)

        monkeypatch.setattr(module, "train_step", poisoned)
        device = torch.device("cpu")
    else:
        import jax
        import jax.numpy as jnp

        from flax_impl import steps as module  # where train_steps finds train_step
        from flax_impl import train as trainer

        real_step = module.train_step

        def poisoned(state, batch):
            images = jnp.where(state.step == 5, jnp.nan, batch["images"])  # global step 5: epoch 2, step 2
            return real_step(state, {**batch, "images": images})

        monkeypatch.setattr(module, "train_step", poisoned)
        jax.clear_caches()  # train_steps must be traced again with the poisoned step
        device = jax.devices("cpu")[0]
    with pytest.raises(NonFiniteLoss) as e:
        trainer.train_and_evaluate(config, ds, device)
    msg = str(e.value)
    assert "epoch 2, step 2 of 4" in msg and f"{tmp_path / CHECKPOINT} (epoch 1)" in msg
    assert int(peek(tmp_path / CHECKPOINT)["epoch"]) == 1
    assert all(np.all(np.isfinite(v)) for v in load_file(tmp_path / CHECKPOINT).values())
    assert not (tmp_path / "model.safetensors").exists()
    if framework == "flax":
        jax.clear_caches()


@pytest.mark.realdata
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_data_errors_reach_the_user_as_one_line(framework, real_data, tmp_path):
    out = ["--out-dir", str(tmp_path / "run")]
    msg = one_line_error(cli(framework, "--data-dir", str(tmp_path / "nowhere"), *out))
    assert "apt-get install dataset-fashion-mnist" in msg
    source = Path(real_data.source.split(" (")[0])
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in FILES:
        (bad / file_in(source, name).name).write_bytes(file_in(source, name).read_bytes())
    labels = bad / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one wrong label: only the checksum can tell
    labels.write_bytes(gzip.compress(bytes(raw)))
    msg = one_line_error(cli(framework, "--data-dir", str(bad), "--epochs", "1", *out))
    assert "checksum mismatch for t10k-labels-idx1-ubyte" in msg
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    msg = one_line_error(cli(framework, "--data-dir", str(bad), "--epochs", "1", *out))
    assert "truncated or corrupt" in msg


def test_interrupted_message_without_checkpoint(tmp_path):
    from common.config import TrainConfig
    from common.cli import interrupted_message

    config = TrainConfig("torch", out_dir=str(tmp_path))
    assert "no checkpoint" in interrupted_message("prog", config, ["--epochs", "2"])



def test_a_ctrl_c_that_a_gc_callback_swallows_still_stops_the_run():
    """Python only prints a KeyboardInterrupt raised inside a garbage-collection callback (JAX has
    one): the run went on to its end (a CI flake). The CLI's handler remembers it; the end of the
    epoch raises it again."""
    import gc
    import os

    from common import interrupts

    def callback(phase, info):
        if phase == "start":
            gc.callbacks.remove(callback)
            os.kill(os.getpid(), signal.SIGINT)  # its KeyboardInterrupt is raised here, and swallowed

    before = signal.getsignal(signal.SIGINT)
    with interrupts.remembered():
        gc.callbacks.append(callback)
        gc.collect()
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_if_requested()
    assert signal.getsignal(signal.SIGINT) is before
    interrupts.raise_if_requested()  # outside the block, nothing is pending
