"""Fashion-MNIST for a proof that brings no data of its own: the kit's one adapter to this project's
loader (data/: verified files, offline from Debian's dataset-fashion-mnist or a cache)."""

from __future__ import annotations

from parity.dataset import Dataset


def load(download: bool = False) -> Dataset:
    """The real Fashion-MNIST as a parity.Dataset: uint8 images (N, 28, 28), int64 labels. Raises
    data.DataError (its message says how to get the files) where they cannot be found."""
    from data import load_fashion_mnist  # here only: the rest of the kit never imports the project's loader

    return Dataset.of(load_fashion_mnist(download=download))


def data_error() -> type[Exception]:
    from data import DataError

    return DataError
