"""The catalogue's machinery (parity.mutants, parity.catalogue) on two bugs and one control, as
`make catalogue` runs every entry: a caught bug is reported as caught by the check that should catch
it, a control passes, and the working tree is never touched."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from parity.bugs import ENTRIES
from parity.catalogue import report, verdict
from parity.mutants import REPO, apply, parse, run

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
    for entry in ENTRIES:
        assert not entry.file.startswith(("tests/", "parity_tests/", "parity/")), entry.name  # the port, never a test
        target = tmp_path / entry.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((REPO / entry.file).read_text())
        apply(entry, tmp_path)
        assert target.read_text() != (REPO / entry.file).read_text()
    assert sum(not e.control for e in ENTRIES) >= 24 and sum(e.control for e in ENTRIES) >= 4


def test_the_parser_reads_both_kinds_of_proof():
    assert parse("bn_net", "ok weight_map (1.0 s): x\nFAILED forward_train (0.5 s): where: it split\n") == (
        "forward_train", "where: it split")
    assert parse("convnet", "..F\nFAILED parity_tests/test_x.py::test_y[a-b] - AssertionError: conv2: 0.3\n") == (
        "test_y[a-b]", "AssertionError: conv2: 0.3")
    assert parse("mnist_net", "ok cross_eval (1 s): x\nmnist_net: every check passed\n")[0] is None


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
    assert ("False alarms: 0 of 1 controls" if caught_by is None else "Recall: 1 of 1 bugs caught") in summary
