"""Shared fixtures: the real data when it can be found offline."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

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
