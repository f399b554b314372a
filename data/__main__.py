"""`python -m data`: find and verify Fashion-MNIST and print counts per class; `--download` fills the cache."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from data.fashion_mnist import CACHE_DIR, CLASSES, DataError, download_all, load_fashion_mnist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    parser.add_argument("--data-dir", help="folder holding the four IDX files (default: search, see README)")
    parser.add_argument("--download", action="store_true", help=f"download missing files into {CACHE_DIR} first")
    args = parser.parse_args(argv)
    try:
        if args.download:
            fetched = download_all(CACHE_DIR)
            print(f"cache {CACHE_DIR}: " + (f"downloaded {len(fetched)} file(s)" if fetched else "already complete"))
        start = time.perf_counter()
        # cache_dir=None: decode and hash every file afresh rather than trust the decoded cache.
        ds = load_fashion_mnist(CACHE_DIR if args.download else args.data_dir, cache_dir=None)
    except DataError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    print(f"found: {ds.source}")
    print(f"verified SHA-256 of all four files and parsed them in {time.perf_counter() - start:.2f} s")
    for split, labels in (("train", ds.train_labels), ("test", ds.test_labels)):
        counts = np.bincount(labels, minlength=len(CLASSES))
        print(f"{split}: {labels.size} samples")
        for name, count in zip(CLASSES, counts):
            print(f"  {name:<12} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
