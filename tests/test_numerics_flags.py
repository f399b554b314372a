"""--precision and --deterministic: accepted by both trainers, recorded, and on a CPU without effect
on the numbers (which are deterministic there anyway). Their GPU effects are measured by
benchmarks/gpu_check.sh on a GPU machine."""

from __future__ import annotations

import json

import pytest

from tests.test_reliability import FRAMEWORKS, cli

pytestmark = pytest.mark.realdata

TINY = ["--train-size", "256", "--test-size", "128", "--epochs", "2", "--seed", "6", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each trainer with the defaults, with --precision tf32, and with --deterministic."""
    out = {}
    for fw in FRAMEWORKS:
        for name, flags in (("default", []), ("tf32", ["--precision", "tf32"]), ("deterministic", ["--deterministic"])):
            folder = tmp_path_factory.mktemp(f"{fw}-{name}")
            proc = cli(fw, *TINY, *flags, "--out-dir", str(folder))
            assert proc.returncode == 0, proc.stderr
            out[fw, name] = folder
    return out


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_both_flags_are_recorded_with_the_same_defaults(framework, runs):
    default = json.loads((runs[framework, "default"] / "config.json").read_text())
    assert (default["precision"], default["deterministic"]) == ("highest", False)
    assert json.loads((runs[framework, "tf32"] / "config.json").read_text())["precision"] == "tf32"
    chosen = json.loads((runs[framework, "deterministic"] / "config.json").read_text())
    assert chosen["deterministic"] is True
    env = chosen["environment"]
    if framework == "torch":
        assert env["deterministic_algorithms"] is True and default["environment"]["allow_tf32"] == {
            "matmul": False, "cudnn": False}
        assert json.loads((runs[framework, "tf32"] / "config.json").read_text())["environment"]["allow_tf32"] == {
            "matmul": True, "cudnn": True}
    else:
        assert "--xla_gpu_deterministic_ops=true" in env["xla_flags"]
        assert default["environment"]["default_matmul_precision"] == "highest"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("flag", ["tf32", "deterministic"])
def test_on_a_cpu_neither_flag_changes_a_number(framework, flag, runs):
    assert (runs[framework, flag] / "metrics.jsonl").read_bytes() == \
        (runs[framework, "default"] / "metrics.jsonl").read_bytes()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_resume_keeps_the_precision(framework, runs, tmp_path):
    from tests.test_reliability import one_line_error

    out = tmp_path / "run"
    out.mkdir()
    for f in runs[framework, "default"].iterdir():
        if f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    msg = one_line_error(cli(framework, *TINY, "--epochs", "3", "--precision", "tf32", "--out-dir", str(out),
                             "--resume"))
    assert "precision (checkpoint 'highest', now 'tf32')" in msg


def test_the_determinism_tool_names_the_first_output_that_differs():
    """benchmarks.determinism's verdict: 'identical', or the first output whose bits differ, by its name."""
    import numpy as np

    from benchmarks.determinism import differences

    a = {"params.conv1.kernel": np.ones((3, 3)), "params.conv2.kernel": np.ones(4, np.float32)}
    same = {k: v.copy() for k, v in a.items()}
    apart = {**same, "params.conv2.kernel": np.array([1, 1, 1 + 2**-23, 1], np.float32)}  # one ulp
    assert differences([a, same, same]) == "identical (3 runs, 2 outputs)"
    assert differences([a, same, apart]) == ("DIFFERS: params.conv2.kernel (run 1 against run 3: 1 of 4 values, "
                                             "max |diff| 1.19e-07)")


def test_the_determinism_tool_runs_every_question_on_a_cpu_and_finds_it_deterministic():
    """Its run on a CPU (tiny settings): every program and piece asked, every answer identical, in the
    process and across two compiling processes. On a GPU, benchmarks/gpu_check.sh's deterministic stage."""
    import subprocess
    import sys

    from tests.test_layers import REPO

    proc = subprocess.run([sys.executable, "-m", "benchmarks.determinism", "--device", "cpu", "--k", "2",
                           "--repeats", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| run time") or line.startswith("| compil")]
    assert len(rows) == 7 and all("| identical (2 runs" in row for row in rows), proc.stdout
    assert "--xla_gpu_deterministic_ops=true" in proc.stdout
