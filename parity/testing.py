"""A port's proof as pytest tests: `globals().update(proof_tests(PORT))` in a test file makes one test
per check, fastest first, each on the real data (the `real_data` fixture of the repository's conftest)."""

from __future__ import annotations

from parity import checks
from parity.port import Port
from parity.seeds import Sweep, check_accuracy_over_seeds


def proof_tests(port: Port, sweep: Sweep | None = Sweep(), data=None) -> dict:
    """{"test_<check>": test function} for every check of the port, in checks.CHECKS order (fastest
    first), then the accuracy over seeds (sweep None: not as a test, for a model too large to train
    in a test run; `python -m parity MODULE --accuracy` runs it).

    The tests take a `real_data` fixture: this repository's conftest has one (Fashion-MNIST). Elsewhere,
    or for other data, give `data`: a parity.Dataset, a function that loads one (called once, when a
    test first needs it; the tests are skipped where it raises FileNotFoundError or OSError, the data
    not installed), or "fashion-mnist" for the real Fashion-MNIST (skipped where it cannot be found);
    a `real_data` fixture comes with the tests."""
    proofs: dict[int, checks.Proof] = {}

    def proof(dataset):  # one per dataset object: its models and draws are shared by the checks
        return proofs.setdefault(id(dataset), checks.Proof(port, dataset))

    def make(check):
        def test(real_data):
            for line in check(proof(real_data)):
                print(line)
        test.__doc__ = check.__doc__
        return test

    tests = {f"test_{name}": make(check) for name, check in checks.CHECKS}
    if data is not None:
        tests["real_data"] = _data_fixture(data)
    if sweep is None:
        return tests
    tests["test_accuracy_over_seeds"] = make(lambda p: check_accuracy_over_seeds(p, sweep))
    tests["test_accuracy_over_seeds"].__doc__ = check_accuracy_over_seeds.__doc__
    return tests


def _data_fixture(data):
    import pytest

    @pytest.fixture(scope="session")
    def real_data():
        if callable(data):
            try:
                return data()
            except OSError as e:  # FileNotFoundError included: the port's data is not installed here
                pytest.skip(f"the port's data is not available: {e}")
        if data != "fashion-mnist":
            return data
        from parity import fashion_mnist

        try:
            return fashion_mnist.load()
        except fashion_mnist.data_error() as e:
            pytest.skip(f"real Fashion-MNIST not available: {e}")

    return real_data
