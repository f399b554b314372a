"""`make test` runs pytest on two xdist workers (conftest.py): a file to a worker, the two files that share
the one-epoch sweeps on one worker, the slow files handed out first, each worker held to its share of the
cores. Tried here on a tree of stand-in files with the repository's conftest.py, in a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SWEEP_FIXTURE = '''
import os, time, pytest

@pytest.fixture(scope="session")
def one_epoch_sweeps():
    with open(os.environ["LOG"], "a") as f:
        f.write(f"sweeps made on {os.environ['PYTEST_XDIST_WORKER']}\\n")
    time.sleep(1)
    return {}
'''
RECORD = '''
import os, pytest
{mark}
@pytest.mark.parametrize("case", range({cases}))
def test_it(case{fixture}):
    with open(os.environ["LOG"], "a") as f:
        f.write(f"{{os.environ['PYTEST_XDIST_WORKER']}} {name} {{os.environ['OMP_NUM_THREADS']}} "
                f"{{os.environ['XLA_FLAGS']}}\\n")
'''


def test_two_workers_keep_the_shared_sweeps_together_slow_first_and_to_their_cores(tmp_path):
    (tmp_path / "conftest.py").write_text((REPO / "conftest.py").read_text())
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nmarkers = ["slow: slow"]\n')
    files = {"parity_tests/test_accuracy.py": ("pytestmark = pytest.mark.slow", 3, ", one_epoch_sweeps"),
             "parity_tests/test_cross_eval.py": ("pytestmark = pytest.mark.slow", 3, ", one_epoch_sweeps"),
             # more tests than the proof: xdist would start them first
             **{f"tests/test_short_{i}.py": ("", 3, "") for i in range(4)},
             "examples/proof/test_proof.py": ("", 2, "")}
    for path, (mark, cases, fixture) in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(RECORD.format(mark=mark, cases=cases, fixture=fixture, name=path))
    (tmp_path / "parity_tests" / "conftest.py").write_text(SWEEP_FIXTURE)
    log = tmp_path / "log"
    env = {**os.environ, "LOG": str(log), "PYTHONPATH": str(REPO)}
    for name in [n for n in env if n.startswith("PYTEST_") or n in ("XLA_FLAGS", "OMP_NUM_THREADS")]:
        del env[name]  # as a fresh `make test` starts, whether or not this test runs on a worker
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider",
                           "-q", "tests", "parity_tests", "examples"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = log.read_text().splitlines()
    made = [line for line in lines if line.startswith("sweeps made")]
    assert len(made) == 1, lines  # not once per worker: the two files that share it went to one
    runs = [line.split() for line in lines if not line.startswith("sweeps made")]
    assert len(runs) == 3 + 3 + 4 * 3 + 2, lines
    sweep_workers = {worker for worker, path, *_ in runs if path.startswith("parity_tests/")}
    assert len(sweep_workers) == 1, lines
    assert {path for _, path, *_ in runs[:2]} <= {"parity_tests/test_accuracy.py", "examples/proof/test_proof.py"}, lines
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert all(omp == threads and f"intra_op_parallelism_threads={threads}" in " ".join(xla)
               for _, _, omp, *xla in runs), lines
