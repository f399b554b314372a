"""Shared fixtures: the real data when it can be found offline."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

# `make test` runs pytest on two xdist workers (pytest -n 2). Each keeps to its share of the cores, as the
# catalogue's proofs do (parity.mutants.thread_limits): uncapped, two processes' torch and XLA thread pools
# oversubscribed 2 cores and the suite took 2601 s against 1997 s in one process. Set before torch or JAX
# is imported, so both read them, and the trainers the tests start inherit them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    from parity.mutants import cores_each, thread_limits

    os.environ.update(thread_limits(cores_each(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))),
                                    os.environ.get("XLA_FLAGS", "")))

# flax_impl's CLI keeps JAX's compilation cache in the user's cache folder by default; tests use
# one of their own (shared by the session's processes, so repeated programs load, not compile).
os.environ.setdefault("FASHION_PARITY_JAX_CACHE", tempfile.mkdtemp(prefix="fashion-parity-test-jax-cache-"))

from data import DataError, load_fashion_mnist

# Tests send SIGINT to trainers they start. A shell without job control starts background commands
# with SIGINT ignored, an ignore that every child inherits, and Python installs no KeyboardInterrupt
# handler where it finds one: `(make test &)` would then fail those tests for a reason not in the
# code. A handler of our own is reset to the default at exec, so the trainers get theirs back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def real_data():
    """The real, verified Fashion-MNIST; skipped (never faked) where it cannot be found offline."""
    try:
        return load_fashion_mnist(download=False)
    except DataError as e:
        if os.environ.get("CI"):  # CI installs the data: a missing file there is a failure, not a skip
            raise
        pytest.skip(f"real Fashion-MNIST not available: {e}")


# `make test` runs `pytest -n 2 --dist loadfile`: a file to a worker, so a file's module fixtures (a
# trained run, a sweep) are made once. Two files share the one-epoch sweeps (a session fixture, ~7 minutes
# at one thread): they go to one worker, as one unit of work. (Not xdist's loadgroup: it names a group by
# rewriting the test's nodeid, which pytest 9 no longer lets it do; the sweeps then ran on both workers,
# 428 s and 404 s.)
SHARED_FIXTURES = {"parity_tests/test_cross_eval.py": "parity_tests/test_accuracy.py"}
# The order work is handed out in (collection order, not xdist's most-tests-first): the slow-marked
# files first (the sweeps alone are about a third of a worker's share), then the examples' proofs (1-4
# minutes a file), parity_tests, and tests/'s many short files last, to fill the gaps: a unit this long
# handed out last would leave the other worker idle for most of it.
TESTPATHS_ORDER = ("examples/", "parity_tests/", "tests/")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, called where it is installed
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LoadFileKeepingSharedFixtures(LoadScopeScheduling):  # as xdist's LoadFileScheduling, one mapping more
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SHARED_FIXTURES.get(path, path)

    config.option.loadscopereorder = False
    return LoadFileKeepingSharedFixtures(config, log)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's collection is the order work is handed out in
        items.sort(key=lambda item: (item.get_closest_marker("slow") is None,
                                     next((rank for rank, path in enumerate(TESTPATHS_ORDER)
                                           if item.nodeid.startswith(path)), len(TESTPATHS_ORDER))))
