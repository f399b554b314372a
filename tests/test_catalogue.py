"""The catalogue's machinery (parity.mutants, parity.catalogue) on two bugs and one control, as
`make catalogue` runs every entry: a caught bug is reported as caught by the check that should catch
it, a control passes, and the working tree is never touched."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from parity.bugs import ENTRIES
from parity.catalogue import report, verdict
from parity.mutants import REPO, apply, kit_failed, parse, run, thread_limits

BY_NAME = {(e.model, e.name): e for e in ENTRIES}


def tree_digest() -> str:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    digest = hashlib.sha256()
    for name in sorted(filter(None, files.decode().split("\0"))):
        path = REPO / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_every_entry_changes_exactly_one_place_of_a_port(tmp_path):
    """Each change's text occurs once; every file changed is the port's (its models, its recipe, and for a
    rewrite that renames the JAX paths its Port's weight map), never a test or the kit."""
    for entry in ENTRIES:
        assert not entry.file.endswith("test_proof.py"), entry.name  # a proof's Port changes only through `also`
        root = tmp_path / entry.name.replace("/", "_")
        files = {file for file, _, _ in entry.changes()}
        for file in files:
            assert not file.startswith(("tests/", "parity_tests/", "parity/")), entry.name
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            (root / file).write_text((REPO / file).read_text())
        apply(entry, root)
        for file in files:
            assert (root / file).read_text() != (REPO / file).read_text(), entry.name
    assert sum(not e.control for e in ENTRIES) >= 70 and sum(e.control for e in ENTRIES) >= 15  # issue #33's targets


def test_the_parser_reads_both_kinds_of_proof():
    assert parse("bn_net", "ok weight_map (1.0 s): x\nFAILED forward_train (0.5 s): where: it split\n") == (
        "forward_train", "where: it split")
    assert parse("convnet", "..F\nFAILED parity_tests/test_x.py::test_y[a-b] - AssertionError: conv2: 0.3\n") == (
        "test_y[a-b]", "AssertionError: conv2: 0.3")
    assert parse("mnist_net", "ok cross_eval (1 s): x\nmnist_net: every check passed\n")[0] is None


def test_one_convnet_run_gives_the_kit_its_own_verdict():
    """The kit's test runs first in the convnet's proof, so its verdict comes from the same run: a
    failure there is the kit's catch, one in a later file means the kit passed; a run that stopped
    before any test (a crash, an import error) is no pass of the kit's."""
    assert kit_failed("F\nFAILED parity_tests/test_kit_convnet.py::test_the_kit - Split: init: first split\n")
    assert not kit_failed("..F\nFAILED parity_tests/test_init.py::test_kit_like[a] - AssertionError: x\n")
    assert kit_failed("ImportError: no module named flax_impl\n")


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("key, caught_by", [
    (("mnist_net", "StepLR stepped per batch"), "schedule"),
    (("bn_net", "biased running variance"), "forward_train"),
    (("bn_net", "running mean's update with its terms reordered"), None),
], ids=["bug-schedule", "bug-batchnorm", "control"])
def test_the_catalogue_reports_a_caught_bug_as_caught_and_a_control_as_passed(real_data, key, caught_by):
    before = tree_digest()
    outcome = run(BY_NAME[key], accuracy=False, timeout=600)
    assert tree_digest() == before, "the working tree changed"
    assert outcome.caught_by == caught_by, (outcome.caught_by, outcome.message)
    assert verdict(outcome) == ("caught" if caught_by else "passed (no false alarm)")
    assert ("first split at" in outcome.message) == bool(caught_by)
    summary = report([outcome], 1, outcome.seconds)
    assert ("false alarms: 0 of 1 controls" if caught_by is None else "1 of 1 bugs caught") in summary


def test_the_report_states_the_kit_alone_and_the_whole_suite_apart():
    """Issue #33: the front of docs/catalogue.md gives the kit's recall and false alarms apart from the
    whole suite's; a convnet bug the suite catches and the kit does not is the kit's miss, unless the
    entry says why the kit cannot reach it (the trainers' own loader), when it leaves the kit's count.
    [Before: one recall, the suite's.]"""
    from parity.mutants import Outcome

    reshuffle = BY_NAME[("convnet", "no reshuffle between epochs")]
    b2 = BY_NAME[("convnet", "Adam's b2 0.99")]
    gelu = BY_NAME[("nanogpt", "tanh GELU for torch's exact erf")]
    control = BY_NAME[("nanogpt", "GELU's exact form written out")]
    outcomes = [Outcome(reshuffle, "test_identical_batches", "m", 1.0, None, ""),
                Outcome(b2, "test_hyperparameters", "m", 1.0, None, ""),
                Outcome(gelu, "forward_eval", "m", 1.0, "forward_eval", "m"),
                Outcome(control, None, "passed", 1.0, None, "")]
    text = report(outcomes, len(outcomes), 60.0)
    kit = next(line for line in text.splitlines() if line.startswith("- **The kit alone**"))
    suite = next(line for line in text.splitlines() if line.startswith("- **The whole suite**"))
    assert "1 of 2 bugs caught (50%)" in kit and "**1 missed unexplained**" in kit and "1 more bugs" in kit, kit
    assert "3 of 3 bugs caught (100%)" in suite and "0 of 1 controls" in suite, suite
    assert verdict(outcomes[0], kit=True) == "out of the kit's reach" and verdict(outcomes[1], kit=True) == "MISSED"


def test_proofs_run_side_by_side_and_the_report_keeps_the_entries_order(tmp_path, monkeypatch):
    """--jobs 2 (the default) runs two proofs at once, each kept to its share of the cores; the report
    lists the entries in the catalogue's order whatever order their proofs finish in, and counts each
    once. The first entry's stand-in proof is the slowest, so the others finish before it: only running
    them side by side lets that happen."""
    import threading
    import time

    from parity import catalogue
    from parity.mutants import Outcome

    names = ["keep probability for drop probability", "dropout active in eval", "StepLR stepped per batch"]
    entries = [next(e for e in ENTRIES if e.name == n) for n in names]
    finished, running, most, caps = [], [0], [0], set()
    lock = threading.Lock()

    def stand_in(entry, accuracy, timeout, threads):
        caps.add(threads)
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.6 if entry is entries[0] else 0.1)
        with lock:
            running[0] -= 1
            finished.append(entry.name)
        return Outcome(entry, "dropout", "first split at x", 0.1, "dropout", "first split at x")

    monkeypatch.setattr(catalogue, "run", stand_in)
    out = tmp_path / "catalogue.md"
    assert catalogue.main([*(a for n in names for a in ("--only", n)), "--model", "mnist_net", "--out", str(out)]) == 0
    assert most[0] == 2 and finished[0] != names[0], (most, finished)
    assert caps == {max(1, (os.cpu_count() or 1) // 2)}, caps  # each proof its share of the cores
    env = thread_limits(1, "--xla_dump_to=x")
    assert env["OMP_NUM_THREADS"] == "1" and env["XLA_FLAGS"].startswith("--xla_dump_to=x "), env
    rows = [line.split(" | ")[1] for line in out.read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == names, rows
    assert "3 of 3 bugs caught" in out.read_text() and "2 proofs at a time" in out.read_text()
    with pytest.raises(SystemExit):
        catalogue.main(["--only", names[0], "--jobs", "0", "--out", str(out)])


def test_the_report_goes_to_a_folder_that_does_not_exist_yet(tmp_path, monkeypatch):
    """--out in a folder not yet made: the folder is made and the report written (the first write failed,
    and the run's other proofs went on for half an hour before the error and the lost report showed)."""
    from parity import catalogue
    from parity.mutants import Outcome

    entry = next(e for e in ENTRIES if e.name == "dropout active in eval")
    monkeypatch.setattr(catalogue, "run",
                        lambda e, accuracy, timeout, threads: Outcome(e, "dropout", "split", 0.1, "dropout", "split"))
    out = tmp_path / "not" / "yet" / "catalogue.md"
    assert catalogue.main(["--only", entry.name, "--model", "mnist_net", "--out", str(out)]) == 0
    assert "1 of 1 bugs caught" in out.read_text()
