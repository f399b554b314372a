"""What a user waits for: the persistent compilation cache, the run's phase timings, one-dispatch
evaluation and device-side pixel conversion."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache.compilation_cache import reset_cache

from common.phases import PHASES
from data import to_float
from flax_impl import compile_cache
from flax_impl import steps as flax_steps
from flax_impl import training as flax_training
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
    entries = set(cache.iterdir())
    assert entries  # the init, the train shapes and the evaluation
    second = flax_cli(tmp_path / "b", cache)
    assert "loaded from the compilation cache" in compile_line(second)
    assert set(cache.iterdir()) == entries  # the keys hold from process to process
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["compilation_cache"] == str(cache)


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
@pytest.mark.parametrize("where", ["a file", "unwritable", "world-writable"])
def test_an_unusable_cache_folder_warns_and_compiles(real_data, tmp_path, where):
    said = "is not usable"
    if where == "a file":
        cache = tmp_path / "cache"
        cache.write_text("a file where the cache folder should be")
    elif where == "unwritable":
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o500)
        if os.access(cache, os.W_OK):  # root ignores permissions: a folder where nobody can create files
            cache = Path("/proc/self")
    else:
        cache = tmp_path / "shared"
        cache.mkdir()
        cache.chmod(0o777)
        said = "is not used: other users can write to it"
    proc = flax_cli(tmp_path / "run", cache)
    assert proc.returncode == 0, proc.stderr
    assert "compilation cache off" in compile_line(proc)
    assert f"compilation cache {cache} {said}" in proc.stderr
    assert "Traceback" not in proc.stderr


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


def tiny_training(seed: int = 1):
    """A train state, a small device-resident set and the CPU placement, for compiling train_steps."""
    from common.config import TrainConfig
    from flax_impl.placement import as_placement

    cpu = jax.devices("cpu")[0]
    ds = synthetic_dataset(64, 10)
    state = flax_training.create_train_state(TrainConfig("flax", seed=seed), cpu)
    x, y = flax_training.device_arrays(ds.train_images, ds.train_labels, cpu)
    return state, x, y, as_placement(cpu)


@pytest.fixture
def cache_settings():
    """JAX's cache settings put back after the test (compile_cache.enable changes them)."""
    before = {k: jax.config.values[k] for k in ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
                                                  "jax_persistent_cache_min_compile_time_secs",
                                                  "jax_persistent_cache_min_entry_size_bytes")}
    yield
    for k, v in before.items():
        jax.config.update(k, v)
    reset_cache()


@pytest.fixture
def jax_cache(tmp_path, cache_settings):
    """JAX's persistent cache on, in a fresh folder, for this test only."""
    assert compile_cache.enable(str(tmp_path / "jax-cache")) == str(tmp_path / "jax-cache")
    reset_cache()
    return tmp_path / "jax-cache"


def test_the_cache_folder_the_project_makes_is_private(tmp_path, cache_settings, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(compile_cache.ENV, raising=False)  # the default folder, not the test session's
    assert compile_cache.enable() == str(tmp_path / "xdg" / "fashion-parity" / "jax")
    assert stat.S_IMODE((tmp_path / "xdg" / "fashion-parity" / "jax").stat().st_mode) == 0o700
    assert jax.config.values["jax_enable_compilation_cache"]


def test_two_first_runs_at_once_both_use_the_cache(tmp_path, cache_settings, monkeypatch):
    """The folder appears between one run's look and its mkdir (another run made it): still used, no warning."""
    folder = tmp_path / "new" / "jax"
    real_mkdir = Path.mkdir

    def the_other_run_was_first(self, *args, **kwargs):
        if self == folder and not folder.exists():
            real_mkdir(folder, mode=0o700, parents=True)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", the_other_run_was_first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compile_cache.enable(str(folder)) == str(folder)
    assert jax.config.values["jax_enable_compilation_cache"]


def test_misses_are_counted_where_jax_writes_no_entry(jax_cache):
    """JAX reports a miss only when it writes the entry, and only process 0 writes: an entry it does
    not write (here: below a size threshold) must still count as compiled, not as the cache off."""
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 2**40)
    x = jax.device_put(np.arange(5.0, dtype=np.float32), jax.devices("cpu")[0])
    with compile_cache.CacheCounter() as counter:
        jax.jit(lambda a: a * 3 + 1).lower(x).compile()
    assert counter.describe().startswith("compiled"), counter.describe()
    assert (counter.hits, counter.misses) == (0, 1)
    assert not any(jax_cache.iterdir())


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_cache_folder_other_users_can_write_is_not_used(tmp_path, cache_settings, mode):
    """JAX runs what it loads from the cache: a folder others can write would let them run code here."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.warns(UserWarning, match=r"compilation cache .*shared is not used: other users can write to it") as w:
        assert compile_cache.enable(str(shared)) is None
    assert len(w) == 1 and "\n" not in str(w[0].message)
    assert not jax.config.values["jax_enable_compilation_cache"]
    assert stat.S_IMODE(shared.stat().st_mode) == mode  # left as the user made it


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the folder to another user")
def test_a_cache_folder_of_another_user_is_not_used(tmp_path, cache_settings):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.warns(UserWarning, match="belongs to another user"):
        assert compile_cache.enable(str(theirs)) is None


@pytest.mark.parametrize("simplified_constants", [False, True])
def test_programs_that_differ_only_in_a_closed_over_constant_each_compute_their_own(jax_cache,
                                                                                    simplified_constants):
    """Two programs whose printed jaxprs can be the same (with simplified jaxpr constants, closed-over
    arrays print as [...]): through the persistent cache each still returns its own constant."""
    cpu = jax.devices("cpu")[0]
    x = jax.device_put(np.zeros(2000, np.float32), cpu)
    before = jax.config.values["jax_use_simplified_jaxpr_constants"]
    jax.config.update("jax_use_simplified_jaxpr_constants", simplified_constants)
    try:
        for value in (2.0, 3.0):
            constant = np.full(2000, value, np.float32)
            compiled = flax_training.compile_program(jax.jit(lambda a, c=constant: a + c), (x,), "cpu")
            np.testing.assert_array_equal(np.asarray(compiled(x)), constant)
    finally:
        jax.config.update("jax_use_simplified_jaxpr_constants", before)


def test_a_compiled_train_step_from_the_cache_computes_the_same(jax_cache):
    state, x, y, cpu = tiny_training()
    with compile_cache.CacheCounter() as first:
        fresh = flax_training.compile_train_steps(state, x, y, (2, 8), cpu)
    jax.clear_caches()  # what a new process finds: only the entry on disk
    with compile_cache.CacheCounter() as second:
        loaded = flax_training.compile_train_steps(state, x, y, (2, 8), cpu)
    assert (first.misses, second.hits) == (1, 1), (first.describe(), second.describe())
    idx = np.arange(16, dtype=np.int32).reshape(2, 8)
    outs = [f(jax.tree.map(jnp.copy, state), flax_training.zero_totals(cpu), x, y, jnp.asarray(idx))
            for f in (fresh, loaded)]
    for a, b in zip(*map(jax.tree.leaves, outs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    donated = jax.tree.map(jnp.copy, state)
    loaded(donated, flax_training.zero_totals(cpu), x, y, jnp.asarray(idx))
    assert donated.params["conv1"]["kernel"].is_deleted()  # the loaded program still donates the state


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
    x, y = flax_training.device_arrays(images, labels, jax.devices("cpu")[0], pad_to=128)
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
    state = flax_training.create_train_state(TrainConfig("flax", seed=2), cpu)
    test_x, test_y = flax_training.device_arrays(ds.test_images, ds.test_labels, cpu, pad_to=flax_steps.EVAL_BATCH_SIZE)
    calls = []
    eval_fn = flax_training.compile_eval(state, test_x, test_y, as_placement(cpu))

    def counted(*args):
        calls.append(1)
        return eval_fn(*args)

    loss, correct, predictions = flax_training.evaluate(counted, state, test_x, test_y, 300)
    assert len(calls) == 1
    step = jax.jit(flax_steps.eval_step)
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


def test_the_process_benchmark_says_what_each_further_epoch_costs_besides_training():
    """The share of evaluation and writing per epoch, from the difference of a row's long and short
    runs (issue #14's GPU target: at most 30%); start-up, compile and final files cancel out."""
    from benchmarks.process import epoch_share_lines

    def row(epochs, train, evaluate, write, phases=True):
        ph = dict.fromkeys(PHASES, 1.0) | {"train": train, "evaluate": evaluate, "write": write}
        return {"row": "flax-warm", "label": "flax_impl, warm", "epochs": epochs, "phases": ph if phases else None}

    blank, line = epoch_share_lines([row(1, 0.10, 0.05, 0.40), row(10, 1.00, 0.23, 0.49)])
    assert blank == "" and "epochs 1 -> 10" in line
    assert "0.130 s, of which train 0.100 s, evaluate 0.020 s, write (checkpoint, metrics) 0.010 s" in line
    assert "evaluation plus writing 23% of the epoch" in line
    assert epoch_share_lines([row(1, 0.1, 0.05, 0.4)]) == []  # one length: nothing to difference
    assert epoch_share_lines([row(1, 0.1, 0.05, 0.4), row(3, 0.3, 0.1, 0.4, phases=False)]) == []  # original


def test_a_process_benchmark_cut_short_keeps_the_rows_it_measured(tmp_path):
    """benchmarks.process rewrites its report after every run: the rows measured before a timeout."""
    import argparse

    from benchmarks.process import report

    run = {"seconds": 9.5, "phases": dict.fromkeys(PHASES, 0.5), "test_accuracy": 0.85}
    results = {("flax-warm", 1): [run], ("torch", 1): [], ("flax-warm", 3): []}
    args = argparse.Namespace(out=str(tmp_path / "process"), rounds=3)
    report(results, "cpu", {"machine": "test machine", "versions": {"jax": "x"}}, args, quiet=True)
    table = (tmp_path / "process.md").read_text()
    assert "0-1 (cut short) interleaved round(s)" in table
    assert "| flax_impl, warm compilation cache | 1 | 9.50 (9.50-9.50) |" in table
    assert "| torch_impl |" not in table and "| 3 |" not in table
    rows = json.loads((tmp_path / "process.json").read_text())["rows"]
    assert [(r["row"], r["epochs"]) for r in rows] == [("flax-warm", 1)]
