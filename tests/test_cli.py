"""Both trainers' command lines: the same flags, defaults stated in --help, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flax_impl import train as flax_train
from torch_impl import train as torch_train

REPO = Path(__file__).resolve().parents[1]
TRAINERS = {"torch": torch_train, "flax": flax_train}
BAD_FLAGS = [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--lr", "0"], "--lr"),
    (["--lr", "-1e-3"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--kernel-size", "2"], "--kernel-size"),
    (["--kernel-size", "4"], "--kernel-size"),
    (["--kernel-size", "11"], "--kernel-size"),
    (["--device", "quantum"], "--device"),
    (["--eval-only"], "--checkpoint"),
    (["--resume", "--overwrite"], "--overwrite"),
    (["--checkpoint", "model.safetensors"], "--init-weights"),
    (["--seed", "-5"], "--seed"),
    (["--seed", str(2**32)], "--seed"),
    (["--eval-only", "--checkpoint", "a.safetensors", "--init-weights", "b.safetensors"], "--init-weights"),
]
FRAMEWORK_BAD_FLAGS = {"torch": [], "flax": [(["--init", "xavier"], "--init"), (["--num-devices", "99"], "--num-devices"),
                                              (["--variant", "fast"], "--variant")]}
DEFAULTS = ["(default: 10)", "(default: 0.001)", "(default: 64)", "(default: 3)", "(default: 0)", "(default: auto)"]
FRAMEWORK_DEFAULTS = {"torch": ["(default: runs/torch)"], "flax": ["(default: runs/flax)", "(default: torch)",
                                                                    "(default: auto)"]}


@pytest.mark.parametrize("framework,flags,needle",
                         [(fw, f, n) for fw in TRAINERS for f, n in BAD_FLAGS + FRAMEWORK_BAD_FLAGS[fw]])
def test_bad_flags_exit_2_with_one_line(framework, flags, needle, capsys):
    with pytest.raises(SystemExit) as e:
        TRAINERS[framework].main(flags)
    assert e.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and needle in err[0]


@pytest.mark.parametrize("framework", TRAINERS)
def test_help_states_every_default(framework):
    out = subprocess.run([sys.executable, "-m", f"{framework}_impl.train", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True, env={**os.environ, "COLUMNS": "400"}).stdout
    for default in DEFAULTS + FRAMEWORK_DEFAULTS[framework]:
        assert default in out, default


def test_a_run_exits_with_its_code_and_its_output_but_no_last_collection():
    """exit_process (both trainers' __main__) skips the interpreter's last garbage collection
    (gc.freeze), and nothing else: the exit code and buffered output are the run's."""
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print(' frozen', gc.get_freeze_count() > 0))\n"
            "from common.cli import exit_process\n"
            "sys.stdout.write('written')\n"
            "exit_process(3)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "written frozen True\n"), proc.stderr
