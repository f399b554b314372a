"""The shared Fashion-MNIST loader (NumPy only: it never imports torch or jax)."""

from data.batching import epoch_order, eval_batches, num_batches, train_batches
from data.fashion_mnist import (
    CACHE_DIR,
    CHECKSUMS,
    CLASSES,
    DEBIAN_DIR,
    ENV_VAR,
    FILES,
    DataError,
    FashionMNIST,
    download_all,
    encode_idx,
    find_data_dir,
    load_fashion_mnist,
    parse_idx,
    to_float,
)

__all__ = [
    "CACHE_DIR",
    "CHECKSUMS",
    "CLASSES",
    "DEBIAN_DIR",
    "ENV_VAR",
    "FILES",
    "DataError",
    "FashionMNIST",
    "download_all",
    "encode_idx",
    "epoch_order",
    "eval_batches",
    "find_data_dir",
    "load_fashion_mnist",
    "num_batches",
    "parse_idx",
    "to_float",
    "train_batches",
]
