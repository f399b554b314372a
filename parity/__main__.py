"""`python -m parity MODULE[:NAME]`: prove a port from the command line, or train both of its sides.

MODULE holds the port (a parity.Port named PORT, or NAME): e.g. examples.mnist_net.test_proof.
    python -m parity examples.mnist_net.test_proof               every check, in order, a line each, then
                                                                 a summary; exits 1 if any split, each
                                                                 failure saying where it is
                     ... --first-failure                          stop at the first split instead
                     ... --accuracy                               then the accuracy over seeds (its SWEEP)
    python -m parity examples.bn_net.test_proof --train --epochs 3 --seeds 0-2 --out runs/bn_net
                                                                 both sides trained by the kit's loop on
                                                                 the shared loader: results.json, a table
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from parity import fashion_mnist
from parity.checks import CHECKS, Proof
from parity.compare import Split
from parity.loop import TRAIN, subset
from parity.seeds import Sweep, check_accuracy_over_seeds
from parity.stats import summarize


def load_port(spec: str):
    """(the port, the module's SWEEP or the default one, the module's DATA (a parity.Dataset or a function
    that loads one) or None)."""
    module, _, name = spec.partition(":")
    try:
        found = importlib.import_module(module)
        return getattr(found, name or "PORT"), getattr(found, "SWEEP", Sweep()), getattr(found, "DATA", None)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"error: cannot load the port {spec!r} ({e}); give MODULE[:NAME], e.g. "
                         "examples.mnist_net.test_proof") from None


def seed_list(text: str) -> list[int]:
    """'0-2' or '0,3,5' -> [0, 1, 2] / [0, 3, 5]."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def prove(port, dataset, sweep: Sweep | None = None, first_failure: bool = False) -> int:
    """Every check in order, a line each, then a summary ('N passed, N failed'); with a sweep, the
    accuracy over seeds last. 1 if any failed (with first_failure: at the first)."""
    proof = Proof(port, dataset)
    checks = [*CHECKS, *([("accuracy_over_seeds", lambda p: check_accuracy_over_seeds(p, sweep))] if sweep else [])]
    failed = []
    for name, check in checks:
        start = time.perf_counter()
        try:
            lines = check(proof)
        except Split as e:
            failed.append((name, str(e)))
        except Exception as e:  # noqa: BLE001 - the port broke the check itself (a shape error, say)
            first = str(e).splitlines()[0] if str(e) else ""
            failed.append((name, f"{type(e).__name__}: {first}"))
        else:
            print(f"ok {name} ({time.perf_counter() - start:.1f} s): {lines[-1]}")
            continue
        print(f"FAILED {name} ({time.perf_counter() - start:.1f} s): {failed[-1][1]}")
        if first_failure:
            return 1
    print(f"{port.name}: {len(checks) - len(failed)} passed, {len(failed)} failed"
          + (f" (first: {failed[0][0]})" if failed else ""))
    if not failed:
        print(f"{port.name}: every check passed")
    return 1 if failed else 0


def train(port, dataset, args) -> int:
    data = subset(dataset, args.train_size, args.test_size)
    results = []
    for seed in seed_list(args.seeds):
        for side in ("torch", "jax"):
            result = TRAIN[side](port, data, seed, args.epochs, progress=print)
            print(f"{side} seed {seed}: test accuracy {result.test_accuracy:.2%}, test loss {result.test_loss:.4f} "
                  f"({result.seconds:.1f} s)")
            results.append(result)
    lines = [f"{port.name}: {args.epochs} epoch(s) on {len(data.train_labels):,} training samples, tested on "
             f"{len(data.test_labels):,}; seeds {args.seeds}", "",
             "| side | test accuracy, mean +- std | test loss | final train loss | seconds per run |",
             "|---|---:|---:|---:|---:|"]
    for side in ("torch", "jax"):
        rs = [r for r in results if r.framework == side]
        acc, loss = summarize([r.test_accuracy for r in rs]), summarize([r.test_loss for r in rs])
        tl, sec = summarize([r.train_loss[-1] for r in rs]), summarize([r.seconds for r in rs])
        lines.append(f"| {side} | {100 * acc['mean']:.2f}% +- {100 * acc['std']:.2f} | {loss['mean']:.4f} | "
                     f"{tl['mean']:.4f} | {sec['mean']:.1f} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
        (out / "results.md").write_text(table)
        print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", help="MODULE[:NAME] holding the parity.Port (NAME defaults to PORT)")
    parser.add_argument("--accuracy", action="store_true",
                        help="after the checks, the accuracy over seeds (the module's SWEEP), as pytest runs it")
    parser.add_argument("--first-failure", "-x", action="store_true", help="stop at the first check that fails")
    parser.add_argument("--train", action="store_true", help="train both sides instead of proving the port")
    parser.add_argument("--epochs", type=int, default=1, help="--train: epochs (default: %(default)s)")
    parser.add_argument("--seeds", default="0", help="--train: seeds, '0-2' or '0,3' (default: %(default)s)")
    parser.add_argument("--train-size", type=int, default=None, help="--train: first N training samples (default: all)")
    parser.add_argument("--test-size", type=int, default=None, help="--train: first N test samples (default: all)")
    parser.add_argument("--out", default=None, help="--train: folder for results.json and results.md")
    args = parser.parse_args(argv)
    port, sweep, dataset = load_port(args.port)  # the port's own data (or a function loading it), or Fashion-MNIST
    if callable(dataset):
        try:
            dataset = dataset()
        except OSError as e:
            print(f"error: the port's data: {e}", file=sys.stderr)
            return 2
    if dataset is None:
        try:
            dataset = fashion_mnist.load()
        except fashion_mnist.data_error() as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.train:
        return train(port, dataset, args)
    return prove(port, dataset, sweep if args.accuracy else None, args.first_failure)


if __name__ == "__main__":
    sys.exit(main())
