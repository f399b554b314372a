"""A known porting bug (or a control) as a text change to a port, applied to a temporary copy of the
repository, whose model's proof then runs there: what parity.catalogue runs for every entry.

The proofs, fastest checks first, stopping at the first failure:
- mnist_net, bn_net, nanogpt, resnet18, word_language_model: `python -m parity examples.<model>.test_proof --accuracy` (the
  kit's checks, then the accuracy over seeds; resnet18 has none a CPU can afford): the kit alone;
- convnet: `pytest -x` over parity_tests (the seed model's own proof: the whole suite), the kit's test
  first (parity_tests/test_kit_convnet.py: the kit's checks on the convnet's port), then the hand-written
  tests in order of speed. One run gives both verdicts: the kit's is whether its test failed, the
  suite's whether any did (a second run of the kit alone cost ~1 minute an entry).
The working tree is never touched: only the copy changes, and it is deleted after.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The convnet's proof: the kit's test, then parity_tests in order of speed (seconds on a 2-core CPU: counts 2,
# optimizer 3, shapes 5, init 5, loss 9, numerics 33, trajectory 22, float64 37, data parity 41, trainers 75;
# cross_eval and accuracy share the 8-seed sweeps, 4.5 minutes, last).
KIT_FILE = "test_kit_convnet.py"
CONVNET_FILES = [KIT_FILE, "test_param_counts.py", "test_optimizer.py", "test_shapes.py", "test_init.py",
                 "test_loss.py", "test_numerics.py", "test_trajectory.py", "test_float64.py",
                 "test_data_parity.py", "test_trainers.py", "test_cross_eval.py", "test_accuracy.py"]


@dataclass(frozen=True)
class Entry:
    """A porting bug (or, with control=True, a change that keeps the same model) as a text change."""

    name: str
    category: str
    model: str  # convnet, mnist_net, bn_net, nanogpt, resnet18 or word_language_model
    file: str
    old: str  # occurs exactly once in the file
    new: str
    why: str  # how it arises, where it is reported
    control: bool = False
    miss_explained: str = ""  # a bug no sound check can catch, and why (the proof is expected to pass)
    kit_unreachable: str = ""  # why the kit alone cannot see it (code the kit never runs), where that is so
    # Further changes of the same entry, (file, old, new) each, applied after the first in order: a rewrite that
    # spans places, e.g. a container that renames the JAX paths and the port's weight map that names them.
    also: tuple[tuple[str, str, str], ...] = ()

    def changes(self) -> list[tuple[str, str, str]]:
        return [(self.file, self.old, self.new), *self.also]


MODELS = ("convnet", "mnist_net", "bn_net", "nanogpt", "resnet18", "word_language_model")
ACCURACY = ("mnist_net", "bn_net", "nanogpt", "word_language_model")  # examples whose accuracy over seeds a CPU affords (resnet18: 40 min)


def proof_command(model: str, accuracy: bool = True, kit_only: bool = False) -> list[str]:
    if model == "convnet":
        files = [KIT_FILE] if kit_only else [f for f in CONVNET_FILES if accuracy or f != "test_accuracy.py"]
        return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rf", "--tb=no",
                *(f"parity_tests/{f}" for f in files)]
    return [sys.executable, "-m", "parity", f"examples.{model}.test_proof", "--first-failure",
            *(["--accuracy"] if accuracy and model in ACCURACY else [])]


@dataclass
class Outcome:
    entry: Entry
    caught_by: str | None  # the check or test that failed first; None: the proof passed
    message: str
    seconds: float
    kit_caught_by: str | None = None  # the kit alone (the examples' proofs are the kit's: the same)
    kit_message: str = ""


def tracked_copy(destination: Path) -> None:
    """The repository's tracked files (as in the working tree) under destination."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    data = REPO / "data" / "fashion-mnist"  # an untracked local copy of the data, if there is one
    if data.is_dir():
        (destination / "data" / "fashion-mnist").symlink_to(data)


def apply(entry: Entry, root: Path) -> None:
    for file, old, new in entry.changes():
        path = root / file
        text = path.read_text()
        if text.count(old) != 1:
            raise ValueError(f"{entry.name}: {file} holds the text to change {text.count(old)} times, not once")
        path.write_text(text.replace(old, new))


def parse(model: str, output: str) -> tuple[str | None, str]:
    """(what failed first, its message) from a proof's output; (None, summary) where it passed."""
    if model == "convnet":
        for line in output.splitlines():
            if line.startswith(("FAILED ", "ERROR ")):
                node, _, message = line.partition(" - ")
                return node.split(" ", 1)[1].split("::", 1)[-1], message.strip() or line
        return None, (output.strip().splitlines() or [""])[-1]
    for line in output.splitlines():
        match = re.match(r"FAILED (\S+) \([\d.]+ s\): (.*)", line)
        if match:
            return match.group(1), match.group(2)
    return None, (output.strip().splitlines() or [""])[-1]


def run(entry: Entry, accuracy: bool = True, timeout: float = 1200, threads: int | None = None) -> Outcome:
    """Apply the entry to a temporary copy of the repository and run its model's proof there: the
    whole suite's, which for the convnet holds the kit's verdict too (its test runs first). threads:
    the CPU threads the proof's torch and XLA may use (None: their defaults, every core)."""
    with tempfile.TemporaryDirectory(prefix="parity-catalogue-") as tmp:
        root = Path(tmp)
        tracked_copy(root)
        apply(entry, root)
        start = time.perf_counter()
        caught_by, message, output = _prove(root, proof_command(entry.model, accuracy), entry.model, timeout, threads)
        kit = (caught_by, message)
        if entry.model == "convnet" and caught_by is not None and not kit_failed(output):
            kit = (None, f"{KIT_FILE} passed (it runs first); the suite then failed at {caught_by}")
        return Outcome(entry, caught_by, message, time.perf_counter() - start, *kit)


def cores_each(processes: int) -> int:
    """Each of `processes` side by side gets this many of the machine's cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // processes)


def thread_limits(threads: int, xla_flags: str = "") -> dict[str, str]:
    """Environment variables that keep a proof's torch (OpenMP) and XLA to `threads` CPU threads. Proofs run
    side by side need it: uncapped, two processes' thread pools oversubscribe the cores and their OpenMP
    workers spin; pytest on two xdist workers, uncapped, took 2601 s against 1997 s alone (user CPU 80
    minutes against 42), the one-epoch sweeps 1099 s against ~300."""
    xla = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads), "XLA_FLAGS": f"{xla_flags} {xla}".strip()}


def kit_failed(output: str) -> bool:
    """Whether a convnet proof's failure is the kit's test's, or stopped the run before any test did
    (an import error, a crash): then the kit did not pass either."""
    failures = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return not failures or any(f"/{KIT_FILE}" in line.split(" - ", 1)[0] for line in failures)


def _prove(root: Path, command: list[str], model: str, timeout: float,
           threads: int | None = None) -> tuple[str | None, str, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "10000", "PYTHONDONTWRITEBYTECODE": "1"}
    if threads is not None:
        env.update(thread_limits(threads, env.get("XLA_FLAGS", "")))
    try:
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"the proof ran past {timeout:.0f} s", ""
    output = proc.stdout + proc.stderr
    caught_by, message = parse(model, output)
    if caught_by is None and proc.returncode != 0:  # it failed in a way the parser did not see
        caught_by, message = "(the proof's process)", (output.strip().splitlines() or ["exit"])[-1]
    return caught_by, message, output
