"""Runs as users live with them: nothing lost, no surprises (both trainers, as processes)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from common.resume import CHECKPOINT, SET_ASIDE
from tests.test_reliability import FRAMEWORKS, REPO, cli, one_line_error

pytestmark = pytest.mark.realdata

TINY = ["--train-size", "256", "--test-size", "128", "--seed", "4", "--quiet"]
LONG = ["--train-size", "6000", "--test-size", "128", "--epochs", "2", "--seed", "4", "--quiet"]
RUN_FILES = ("config.json", "metrics.jsonl", "timings.json", "summary.json", "model.safetensors", "predictions.png",
             "curves.png", CHECKPOINT)


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in RUN_FILES}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch tiny run per framework, to be protected."""
    runs = {}
    for fw in FRAMEWORKS:
        out = tmp_path_factory.mktemp(f"finished-{fw}") / "run"
        proc = cli(fw, *TINY, "--epochs", "2", "--out-dir", str(out))
        assert proc.returncode == 0, proc.stderr
        runs[fw] = out
    return runs


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in RUN_FILES:
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def start(framework: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"{framework}_impl.train", *flags], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None and not condition():
        time.sleep(0.01)
    assert condition(), "the run ended before the moment the test waited for"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_overwrite_with_bad_data_loses_nothing(framework, finished, tmp_path):
    out = copy_run(finished[framework], tmp_path / "run")
    before = snapshot(out)
    msg = one_line_error(cli(framework, *TINY, "--out-dir", str(out), "--overwrite", "--data-dir", str(tmp_path / "no")))
    assert "Fashion-MNIST" in msg or "data" in msg
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)  # not even locked or set aside: untouched


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_overwrite_stopped_before_its_first_checkpoint_gives_the_old_run_back(framework, sig, finished, tmp_path):
    out = copy_run(finished[framework], tmp_path / "run")
    before = snapshot(out)
    proc = start(framework, *LONG, "--out-dir", str(out), "--overwrite")
    wait_for(lambda: (out / SET_ASIDE).is_dir() and (out / "config.json").is_file(), proc)
    assert not (out / CHECKPOINT).exists()  # the new run is before its first checkpoint
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "back in place" in stderr
    else:  # nothing could run at the kill: the next command puts the old run back before anything else
        msg = one_line_error(cli(framework, *TINY, "--out-dir", str(out)))
        assert "holds a finished run" in msg
    assert snapshot(out) == before and not (out / SET_ASIDE).exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_completed_overwrite_replaces_the_old_run(framework, finished, tmp_path):
    out = copy_run(finished[framework], tmp_path / "run")
    proc = cli(framework, *TINY, "--epochs", "1", "--out-dir", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (out / SET_ASIDE).exists()


@pytest.mark.parametrize("first,second", [("torch", "flax"), ("flax", "flax")])
def test_a_second_run_into_a_busy_folder_is_refused(first, second, tmp_path):
    out = tmp_path / "run"
    running = start(first, *LONG, "--out-dir", str(out))
    wait_for(lambda: (out / "config.json").is_file(), running)
    msg = one_line_error(cli(second, *TINY, "--out-dir", str(out), "--overwrite"))
    assert f"in use by another run (process {running.pid})" in msg
    _, stderr = running.communicate(timeout=300)
    assert running.returncode == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["framework"] == first and len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_out_dir_that_cannot_be_made_is_one_line(framework, tmp_path):
    msg = one_line_error(cli(framework, *TINY, "--out-dir", "/proc/fashion-parity/run"))
    assert "cannot create --out-dir /proc/fashion-parity/run" in msg


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_run_files_follow_the_umask(framework, finished):
    umask = os.umask(0)
    os.umask(umask)
    for name in RUN_FILES:
        mode = (finished[framework] / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, f"{name}: {oct(mode)}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_finished_run_is_extended_exactly_as_a_longer_run(framework, finished, tmp_path):
    out = copy_run(finished[framework], tmp_path / "run")
    proc = cli(framework, *TINY, "--epochs", "4", "--out-dir", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "warning: resuming with --epochs 4 (the run so far: 2)" in proc.stderr
    straight = cli(framework, *TINY, "--epochs", "4", "--out-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    assert (out / "metrics.jsonl").read_bytes() == (tmp_path / "straight" / "metrics.jsonl").read_bytes()
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    config = json.loads((out / "config.json").read_text())
    original = json.loads((finished[framework] / "config.json").read_text())
    assert config["provenance"] == original["provenance"]  # kept across the resume
    assert [s["from_epoch"] for s in config["segments"]] == [0, 2]
    assert config["segments"][1]["changed"] == {"epochs": {"was": 2, "now": 4}} and config["epochs"] == 4
    # Nothing left to extend: a resume that would shorten or repeat the run says what to do.
    assert "--epochs larger than 4" in one_line_error(cli(framework, *TINY, "--epochs", "4", "--out-dir", str(out),
                                                          "--resume"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_resume_may_lower_the_learning_rate_and_records_it(framework, finished, tmp_path):
    out = copy_run(finished[framework], tmp_path / "run")
    proc = cli(framework, *TINY, "--epochs", "3", "--lr", "0.0005", "--out-dir", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "--lr 0.0005 (the run so far: 0.001)" in proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["segments"][-1]["changed"]["lr"] == {"was": 0.001, "now": 0.0005}
    assert config["lr"] == 0.0005 and config["segments"][0]["lr"] == 0.001


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_config_records_what_reproduces_the_run(framework, finished):
    config = json.loads((finished[framework] / "config.json").read_text())
    prov = config["provenance"]
    assert shlex.split(prov["command"])[:3] == ["python", "-m", f"{framework}_impl.train"]
    assert "--train-size" in prov["command"]
    assert len(prov["git"]["commit"]) == 40 and isinstance(prov["git"]["dirty"], bool)
    assert prov["cpu_count"] == os.cpu_count()
    env = config["environment"]
    assert ("torch_threads" in env and "cudnn" in env) if framework == "torch" else ("jaxlib" in env)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_eval_only_takes_a_training_checkpoint_and_the_recorded_kernel_size(framework, tmp_path):
    out = tmp_path / "k5"
    proc = cli(framework, *TINY, "--epochs", "1", "--kernel-size", "5", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    correct = json.loads((out / "summary.json").read_text())["test_correct"]
    for name in ("model.safetensors", CHECKPOINT):  # no --kernel-size: the file says 5
        res = cli(framework, "--eval-only", "--checkpoint", str(out / name), "--test-size", "128")
        assert res.returncode == 0, res.stderr
        assert f"({correct}/128)" in res.stdout


def test_the_printed_resume_command_survives_a_shell(tmp_path):
    from common.cli import resume_command

    line = resume_command("python -m torch_impl.train", ["--out-dir", "my runs/it's here", "--overwrite"])
    assert shlex.split(line)[3:] == ["--out-dir", "my runs/it's here", "--resume"]


def fake_run(folder: Path, framework: str, **config) -> Path:
    folder.mkdir(parents=True)
    settings = {"framework": framework, "epochs": 1, "batch_size": 64, "kernel_size": 3, "lr": 0.001, "seed": 0,
                "train_size": None, "test_size": None, **config}
    (folder / "config.json").write_text(json.dumps(settings))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8,
                                                      "test_loss": 0.4, "test_accuracy": 0.85,
                                                      "test_correct": 8500}) + "\n")
    (folder / "summary.json").write_text(json.dumps({"test_accuracy": 0.85, "test_correct": 8500, "test_loss": 0.4,
                                                     "mean_epoch_seconds": 10.0, "compile_seconds": None,
                                                     "total_seconds": 10.0, "parameters": 225034, "device": "cpu"}))
    return folder


def test_compare_says_when_runs_are_not_comparable_and_gives_no_speed_ratio(tmp_path, capsys):
    from common.compare import main as compare_main

    a = fake_run(tmp_path / "a", "torch")
    b = fake_run(tmp_path / "b", "flax", train_size=2000)
    c = fake_run(tmp_path / "c", "flax")
    assert compare_main([str(a), str(b), "--out", str(tmp_path / "ab")]) == 0
    report = (tmp_path / "ab.md").read_text()
    assert "Not comparable run for run: the runs differ in train_size None vs 2000" in report
    assert "as fast as" not in report and "differ in train_size" in capsys.readouterr().err
    compare_main([str(a), str(c), "--out", str(tmp_path / "ac")])
    assert "as fast as" in (tmp_path / "ac.md").read_text()


def test_compare_puts_any_number_of_runs_side_by_side(tmp_path):
    """make train compares three runs (torch, flax, flax --api nnx): a column each, differences against the first."""
    from common.compare import main as compare_main

    runs = [fake_run(tmp_path / "t", "torch"), fake_run(tmp_path / "l", "flax"),
            fake_run(tmp_path / "n", "flax", api="nnx")]
    assert compare_main([*map(str, runs), "--out", str(tmp_path / "three")]) == 0
    report = (tmp_path / "three.md").read_text()
    assert "| | torch | flax | flax-nnx |" in report
    assert "| test accuracy | 85.00% | 85.00% (+0.00) | 85.00% (+0.00) |" in report
    assert report.count("as fast as torch per epoch") == 2
    assert "| epoch | train loss torch | train loss flax | train loss flax-nnx |" in report
    assert (tmp_path / "three.png").read_bytes()[:4] == b"\x89PNG"
