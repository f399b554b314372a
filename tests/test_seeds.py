"""Seed sweeps (--seeds): each seed is its single-seed run, in every way a sweep can train it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from safetensors.numpy import load_file

from common.resume import CHECKPOINT, peek
from common.stats import welch
from common.summary import summarize
from tests.test_reliability import REPO, cli, one_line_error

TINY = ["--train-size", "256", "--test-size", "128", "--quiet"]
# (framework, extra flags) of every way a sweep trains: torch one after another; flax both ways.
MODES = {"torch": ("torch", []), "flax-sequential": ("flax", ["--sweep", "sequential"]),
         "flax-vmap": ("flax", ["--sweep", "vmap"])}
FILES = ("config.json", "metrics.jsonl", "timings.json", "summary.json", "model.safetensors", "predictions.png",
         "curves.png", CHECKPOINT)
# The vmapped sweep against single-seed runs on XLA:CPU, where jax.vmap turns each convolution
# into one grouped convolution whose sums may be ordered differently: epoch 1 came out bit for bit
# in every run here, epoch 2's test loss differed in its 8th significant digit (1.39237416 against
# 1.39237428, 9e-8 relative). 1e-5 relative is a hundred times that, and a thousand times below
# any porting bug this suite has caught (those move a loss by 1e-2).
VMAP_RTOL = 1e-5


def run_ok(framework: str, *args: str) -> None:
    proc = cli(framework, *TINY, *args)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, real_data):
    """A 2-epoch sweep of seeds 1 and 4 per mode, and seed 4's single run per framework."""
    root = tmp_path_factory.mktemp("sweeps")
    for mode, (fw, flags) in MODES.items():
        run_ok(fw, "--seeds", "1,4", "--epochs", "2", *flags, "--out-dir", str(root / mode))
    for fw in ("torch", "flax"):
        run_ok(fw, "--seed", "4", "--epochs", "2", "--out-dir", str(root / f"single-{fw}"))
    return root


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.realdata
@pytest.mark.parametrize("mode", ["torch", "flax-sequential"])
def test_each_seed_of_a_sweep_is_its_single_seed_run(sweeps, mode):
    fw = MODES[mode][0]
    seed, single = sweeps / mode / "seed-4", sweeps / f"single-{fw}"
    assert sorted(p.name for p in seed.iterdir() if not p.name.startswith(".")) == sorted(FILES)
    assert (seed / "metrics.jsonl").read_bytes() == (single / "metrics.jsonl").read_bytes()
    for name in ("model.safetensors", CHECKPOINT):
        a, b = load_file(seed / name), load_file(single / name)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
    config = json.loads((seed / "config.json").read_text())
    assert config["seed"] == 4 and config["in_sweep"]["seeds"] == [1, 4]


@pytest.mark.realdata
def test_a_vmapped_sweep_trains_the_single_seed_runs(sweeps):
    for seed_epoch, single_epoch in zip(metrics(sweeps / "flax-vmap" / "seed-4"), metrics(sweeps / "single-flax")):
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            assert seed_epoch[key] == pytest.approx(single_epoch[key], rel=VMAP_RTOL, abs=1e-7), key
    a, b = load_file(sweeps / "flax-vmap" / "seed-4" / "model.safetensors"), load_file(
        sweeps / "single-flax" / "model.safetensors")
    # Adam divides each step by the gradient's running RMS, so where a weight's gradient is ~0 a
    # last-digit difference can move it by a good part of one step (lr 1e-3): measured here, at
    # most 1.1e-4 (conv2.weight, 8 steps), 2.8e-7 on average. Bounds: a quarter step; 1e-6 on average.
    for k in a:
        assert np.abs(a[k] - b[k]).max() <= 2.5e-4 and np.abs(a[k] - b[k]).mean() <= 1e-6, k


@pytest.mark.realdata
@pytest.mark.parametrize("mode", list(MODES))
def test_seeds_json_aggregates_the_seed_folders(sweeps, mode):
    record = json.loads((sweeps / mode / "seeds.json").read_text())
    assert record["complete"] and record["seeds"] == [1, 4] and record["mode"] in ("vmap", "sequential")
    finals = [metrics(sweeps / mode / f"seed-{s}")[-1] for s in (1, 4)]
    for key in ("test_accuracy", "test_loss", "train_loss", "train_accuracy"):
        assert record["final"][key] == pytest.approx(summarize([f[key] for f in finals]))
        assert record["per_seed"]["4"][key] == finals[1][key]
    assert len(record["per_epoch"]) == 2 and len(record["epoch_seconds"]) == 2


@pytest.mark.realdata
@pytest.mark.parametrize("mode", ["torch", "flax-vmap"])
def test_a_sweep_resumes_seeds_stopped_at_different_epochs(mode, tmp_path):
    """A sweep stopped between two seeds' checkpoints: the seed behind catches up, then all go on,
    and every seed ends exactly where an uninterrupted sweep ends."""
    fw, flags = MODES[mode]
    out = tmp_path / "sweep"
    run_ok(fw, "--seeds", "1,4", "--epochs", "1", *flags, "--out-dir", str(out))
    behind = tmp_path / "epoch-1.safetensors"
    shutil.copy(out / "seed-4" / CHECKPOINT, behind)
    run_ok(fw, "--seeds", "1,4", "--epochs", "2", *flags, "--out-dir", str(out), "--resume")
    shutil.copy(behind, out / "seed-4" / CHECKPOINT)  # seed 1 is at epoch 2, seed 4 back at epoch 1
    proc = cli(fw, *TINY, "--seeds", "1,4", "--epochs", "3", *flags, "--out-dir", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    run_ok(fw, "--seeds", "1,4", "--epochs", "3", *flags, "--out-dir", str(tmp_path / "straight"))
    for s in (1, 4):
        assert metrics(out / f"seed-{s}") == metrics(tmp_path / "straight" / f"seed-{s}")


@pytest.mark.realdata
def test_an_interrupted_sweep_says_how_far_it_got_and_its_resume_command_finishes_it(tmp_path):
    from tests.test_run_safety import start, wait_for

    flags = ["--train-size", "4096", "--test-size", "128", "--seeds", "1,4", "--epochs", "3", "--quiet"]
    out = tmp_path / "sweep"
    proc = start("flax", *flags, "--out-dir", str(out))
    wait_for(lambda: all(peek(out / f"seed-{s}" / CHECKPOINT) for s in (1, 4)), proc)  # both seeds saved epoch 1
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"the last checkpoints are in {out}/seed-*/ (epoch" in stderr
    command = stderr.split("resume with: ")[1].strip().split()
    assert command[:3] == ["python", "-m", "flax_impl.train"] and command[-1] == "--resume"
    for args in (command[3:], [*flags, "--out-dir", str(tmp_path / "straight")]):
        done = subprocess.run([sys.executable, "-m", "flax_impl.train", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    for s in (1, 4):
        assert metrics(out / f"seed-{s}") == metrics(tmp_path / "straight" / f"seed-{s}")


@pytest.mark.realdata
@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_a_finished_sweep_is_protected_and_extendable(sweeps, framework, tmp_path):
    mode = "torch" if framework == "torch" else "flax-sequential"
    out = tmp_path / "sweep"
    shutil.copytree(sweeps / mode, out)
    msg = one_line_error(cli(framework, *TINY, "--seeds", "1,4", "--epochs", "2", "--out-dir", str(out)))
    assert "holds a finished run" in msg and "seed-1" in msg
    msg = one_line_error(cli(framework, *TINY, "--seeds", "1,4", "--epochs", "2", "--out-dir", str(out), "--resume"))
    assert "finished sweep" in msg and "--epochs" in msg
    run_ok(framework, "--seeds", "1,4", "--epochs", "3", "--out-dir", str(out), "--resume")
    assert [len(metrics(out / f"seed-{s}")) for s in (1, 4)] == [3, 3]
    assert json.loads((out / "seeds.json").read_text())["epochs_done_by_all"] == 3


@pytest.mark.realdata
@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_a_diverging_seed_is_named_and_the_others_keep_their_checkpoints(framework, tmp_path):
    msg = one_line_error(cli(framework, *TINY, "--seeds", "2,3", "--lr", "1e30", "--out-dir", str(tmp_path / "s")))
    assert "seed 2: the training loss became non-finite at epoch 1" in msg
    assert "lower --lr" in msg


@pytest.mark.parametrize("framework", ["torch", "flax"])
@pytest.mark.parametrize("flags,expected", [
    (["--seeds", "0-3", "--seed", "2"], "--seed and --seeds exclude each other"),
    (["--seeds", "3-1"], "empty range '3-1'"),
    (["--seeds", "0,2,0"], "seed 0 is listed twice"),
    (["--seeds", "0-x"], "invalid int value: 'x'"),
    (["--seeds", "0-1", "--eval-only", "--checkpoint", "x.safetensors"], "--seeds trains a sweep"),
])
def test_seed_lists_are_checked(framework, flags, expected, capsys, tmp_path):
    assert expected in usage_error(framework, flags, capsys, tmp_path)


def test_a_flax_sweep_stays_on_one_device(capsys, tmp_path):
    flags = ["--seeds", "0-1", "--num-devices", "2"]
    assert "--seeds trains on one device" in usage_error("flax", flags, capsys, tmp_path)


def test_sweep_needs_seeds(capsys, tmp_path):
    assert "add --seeds" in usage_error("flax", ["--sweep", "vmap"], capsys, tmp_path)


def usage_error(framework: str, flags: list[str], capsys, tmp_path: Path) -> str:
    """The one 'error:' line with which the trainer's main() exits 2 (were the flags accepted, a
    tiny run would start instead, and the test fail)."""
    from flax_impl import train as flax_train
    from torch_impl import train as torch_train

    with pytest.raises(SystemExit) as e:
        {"torch": torch_train, "flax": flax_train}[framework].main(
            [*flags, "--epochs", "1", "--train-size", "64", "--test-size", "64", "--out-dir", str(tmp_path / "run")])
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert e.value.code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.realdata
def test_compare_reports_two_sweeps_as_distributions(sweeps, tmp_path):
    from common.compare import main as compare_main

    assert compare_main([str(sweeps / "torch"), str(sweeps / "flax-sequential"), "--out", str(tmp_path / "c")]) == 0
    text = (tmp_path / "c.md").read_text()
    acc = [[m["test_accuracy"] for m in (metrics(sweeps / d / f"seed-{s}")[-1] for s in (1, 4))]
           for d in ("torch", "flax-sequential")]
    w = welch(*acc)
    row = next(line for line in text.splitlines() if line.startswith("| test accuracy |"))  # the summary table
    assert row.endswith(f"| {100 * w['diff']:+.2f} points [{100 * w['low']:+.2f}, {100 * w['high']:+.2f}] |")
    last = next(line for line in text.splitlines() if line.startswith("| 2 |"))  # epoch 2 in the per-epoch table
    assert f"{100 * w['diff']:+.2f} points [{100 * w['low']:+.2f}, {100 * w['high']:+.2f}]" in last
    assert "Welch" in text
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        compare_main([str(sweeps / "torch"), str(sweeps / "single-flax"), "--out", str(tmp_path / "x")])


def test_welch_intervals_use_students_t_from_the_tables():
    # Two samples of n values with the same spread: Welch's degrees of freedom are 2 (n - 1), and
    # the interval's half width is that t quantile (Student's t table, two-sided) times the std error.
    for level, df, t in [(0.95, 2, 4.3027), (0.95, 4, 2.7764), (0.95, 10, 2.2281), (0.99, 4, 4.6041),
                         (0.99, 30, 2.7500), (0.95, 1_000_000, 1.9600)]:
        n = df // 2 + 1
        a = np.linspace(0.0, 1.0, n)
        w = welch(a, a + 0.25, level)
        assert w["df"] == pytest.approx(df)
        assert w["diff"] == pytest.approx(0.25)
        assert (w["high"] - w["diff"]) / w["se"] == pytest.approx(t, abs=1e-4)
        assert (w["diff"] - w["low"]) / w["se"] == pytest.approx(t, abs=1e-4)


def test_welch_interval_matches_its_formula():
    a, b = [0.50, 0.52, 0.51, 0.55], [0.53, 0.52, 0.56, 0.58, 0.54]
    w = welch(a, b)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert w["diff"] == pytest.approx(np.mean(b) - np.mean(a))
    assert (w["low"], w["high"], w["df"]) == pytest.approx((w["diff"] - half, w["diff"] + half, df))
    assert welch([1.0, 1.0], [1.0, 1.0])["low"] == 0.0  # identical runs: no spread, no interval
    with pytest.raises(ValueError, match="two seeds or more"):
        welch([1.0], [1.0, 2.0])
