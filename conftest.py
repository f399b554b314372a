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
    from parity.mutants import thread_limits

    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.update(thread_limits(max(1, (os.cpu_count() or 1) // _workers), os.environ.get("XLA_FLAGS", "")))

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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """One file, one xdist worker (pytest -n N --dist loadgroup): a file's module fixtures (a trained run,
    a sweep) are then made once, not once per worker. A file that shares a session fixture with another
    names a common group itself (parity_tests' one-epoch sweeps)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
