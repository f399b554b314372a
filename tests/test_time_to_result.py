"""What a user waits for: the persistent compilation cache, the run's phase timings, one-dispatch
evaluation and device-side pixel conversion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from common.phases import PHASES
from data import to_float
from flax_impl import compile_cache
from flax_impl import train as flax_train
from tests.helpers import synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--train-size", "256", "--test-size", "128", "--overwrite"]


def flax_cli(out: Path, cache, *flags: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    if cache is not None:
        env[compile_cache.ENV] = str(cache)
    return subprocess.run([sys.executable, "-m", "flax_impl.train", *TINY, "--out-dir", str(out), *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def compile_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return next(line for line in proc.stdout.splitlines() if line.startswith("compiled"))


@pytest.mark.realdata
def test_second_run_loads_every_program_from_the_cache_and_trains_the_same(real_data, tmp_path):
    cache = tmp_path / "cache"
    first = flax_cli(tmp_path / "a", cache)
    assert "compiled; saved to the compilation cache" in compile_line(first)
    assert any(cache.iterdir())
    second = flax_cli(tmp_path / "b", cache)
    assert "loaded from the compilation cache" in compile_line(second)
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["extra"]["compilation_cache"] == str(cache)


@pytest.mark.realdata
def test_a_corrupt_cache_warns_and_compiles(real_data, tmp_path):
    cache = tmp_path / "cache"
    assert flax_cli(tmp_path / "a", cache).returncode == 0
    for entry in cache.rglob("*"):
        if entry.is_file():
            entry.write_bytes(b"not an executable")
    again = flax_cli(tmp_path / "b", cache)
    assert again.returncode == 0, again.stderr
    assert "compiled; saved to the compilation cache" in compile_line(again)
    assert "Error reading persistent compilation cache entry" in again.stderr  # JAX's own warning
    assert "Traceback" not in again.stderr
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()


@pytest.mark.realdata
@pytest.mark.parametrize("where", ["a file", "unwritable"])
def test_an_unusable_cache_folder_warns_and_compiles(real_data, tmp_path, where):
    if where == "a file":
        cache = tmp_path / "cache"
        cache.write_text("a file where the cache folder should be")
    else:
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o500)
        if os.access(cache, os.W_OK):  # root ignores permissions: a folder where nobody can create files
            cache = Path("/proc/self")
    proc = flax_cli(tmp_path / "run", cache)
    assert proc.returncode == 0, proc.stderr
    assert "compilation cache off" in compile_line(proc)
    assert f"compilation cache {cache} is not usable" in proc.stderr


@pytest.mark.realdata
def test_the_cache_can_be_switched_off_by_flag_or_environment(real_data, tmp_path):
    assert "compilation cache off" in compile_line(flax_cli(tmp_path / "a", "off"))
    cache = tmp_path / "cache"
    proc = flax_cli(tmp_path / "b", cache, "--compilation-cache", "off")
    assert "compilation cache off" in compile_line(proc) and not cache.exists()


def test_default_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_dir() == tmp_path / "xdg" / "fashion-parity" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.default_dir() == Path.home() / ".cache" / "fashion-parity" / "jax"


@pytest.mark.realdata
@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_timings_say_where_the_seconds_went(real_data, tmp_path, framework):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", f"{framework}_impl.train", *TINY, "--epochs", "2",
                           "--out-dir", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    timings = json.loads((out / "timings.json").read_text())
    phases = timings["phases"]
    assert set(phases) == set(PHASES)
    assert all(v >= 0 for v in phases.values())
    for phase in ("import", "data", "init", "train", "evaluate", "write"):
        assert phases[phase] > 0, phase
    assert (phases["compile"] > 0) == (framework == "flax")
    # The epochs' own clock (training and evaluation) agrees with the phases that make it up.
    assert phases["train"] + phases["evaluate"] <= sum(timings["epoch_seconds"]) + 0.05


def test_pixels_reach_the_device_as_the_shared_loaders_floats():
    ds = synthetic_dataset(300, 10)
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(28 * 28 // 256 + 1, 0)
    images = np.concatenate([ds.train_images, np.resize(every_value, (1, 28, 28))])
    labels = np.concatenate([ds.train_labels, [0]])
    x, y = flax_train.device_arrays(images, labels, jax.devices("cpu")[0], pad_to=128)
    x = np.asarray(x)
    assert x.shape == (384, 28, 28, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:301, ..., 0].view(np.uint32), to_float(images).view(np.uint32))
    assert np.all(x[301:] == 0) and np.all(np.asarray(y)[301:] == -1)


def test_evaluation_is_one_dispatch_that_matches_batch_by_batch():
    """The whole test set in one call of the compiled evaluation, equal to evaluating batch by batch."""
    from common.config import TrainConfig
    from flax_impl.placement import as_placement

    cpu = jax.devices("cpu")[0]
    ds = synthetic_dataset(10, 300)
    state = flax_train.create_train_state(TrainConfig("flax", seed=2), cpu)
    test_x, test_y = flax_train.device_arrays(ds.test_images, ds.test_labels, cpu, pad_to=flax_train.EVAL_BATCH_SIZE)
    calls = []
    eval_fn = flax_train.compile_eval(state, test_x, test_y, as_placement(cpu))

    def counted(*args):
        calls.append(1)
        return eval_fn(*args)

    loss, correct, predictions = flax_train.evaluate(counted, state, test_x, test_y, 300)
    assert len(calls) == 1
    step = jax.jit(flax_train.eval_step)
    batches = [step(state, {"images": test_x[s:s + 128], "labels": test_y[s:s + 128]}) for s in range(0, 384, 128)]
    np.testing.assert_array_equal(predictions, np.concatenate([np.asarray(b["predictions"]) for b in batches])[:300])
    assert correct == sum(int(b["correct"]) for b in batches)
    assert loss == pytest.approx(sum(float(b["loss_sum"]) for b in batches) / 300, rel=1e-6)


def test_a_phase_inside_another_counts_its_seconds_once(monkeypatch):
    """A phase entered inside another (torch_impl's CUDA graph, captured during a sweep's first
    epoch) pauses the outer one: the phases add up to the wall time."""
    from common import phases

    now = [0.0]
    monkeypatch.setattr(phases.time, "perf_counter", lambda: now[0])
    clock = phases.PhaseClock()
    with clock("train"):
        now[0] += 2.0
        with clock("compile"):
            now[0] += 3.0
        now[0] += 1.0
    assert clock.seconds["train"] == 3.0 and clock.seconds["compile"] == 3.0
    assert sum(clock.seconds.values()) == 6.0
