"""The folder layout torchvision's FashionMNIST reads, filled from wherever the loader found the data."""

from __future__ import annotations

from pathlib import Path

from data.atomic import atomic_write
from data import CACHE_DIR, FILES, find_data_dir
from data.fashion_mnist import file_in, read_bytes


def torchvision_root() -> str:
    """data/fashion-mnist/torchvision/FashionMNIST/raw/ with the four uncompressed IDX files."""
    root = CACHE_DIR / "torchvision"
    raw = root / "FashionMNIST" / "raw"
    if not all((raw / name).is_file() for name in FILES):
        source, _ = find_data_dir()
        raw.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            atomic_write(raw / name, read_bytes(file_in(Path(source), name)))
    return str(root)
