"""A port's proof as pytest tests: `globals().update(proof_tests(PORT))` in a test file makes one test
per check, fastest first, each on the real data (the `real_data` fixture of the repository's conftest)."""

from __future__ import annotations

from parity import checks
from parity.port import Port
from parity.seeds import Sweep, check_accuracy_over_seeds


def proof_tests(port: Port, sweep: Sweep | None = Sweep()) -> dict:
    """{"test_<check>": test function} for every check of the port, in checks.CHECKS order (fastest
    first), then the accuracy over seeds (sweep None: not as a test, for a model too large to train
    in a test run; `python -m parity MODULE --accuracy` runs it)."""
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
    if sweep is None:
        return tests
    tests["test_accuracy_over_seeds"] = make(lambda p: check_accuracy_over_seeds(p, sweep))
    tests["test_accuracy_over_seeds"].__doc__ = check_accuracy_over_seeds.__doc__
    return tests
