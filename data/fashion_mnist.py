"""Find, verify, parse and cache Fashion-MNIST; NumPy only, shared by both frameworks."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.atomic import atomic_write

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# SHA-256 of the *decompressed* IDX bytes: upstream and Debian gzip them differently.
CHECKSUMS = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FILES = tuple(CHECKSUMS)

# The same mirrors torchvision's FashionMNIST uses, plus the project's own GitHub copy.
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

ENV_VAR = "FASHION_MNIST_DIR"


def cache_dir(package: Path = Path(__file__).resolve().parent) -> Path:
    """data/fashion-mnist/ in a source checkout (beside pyproject.toml, ignored by git); anywhere else,
    e.g. a `pip install .` into site-packages, the user's cache: $XDG_CACHE_HOME/fashion-parity/data."""
    if (package.parent / "pyproject.toml").is_file():
        return package / "fashion-mnist"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fashion-parity" / "data"


CACHE_DIR = cache_dir()
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(Exception):
    """The data could not be found, read or trusted; the message says what to do."""


@dataclass(frozen=True)
class FashionMNIST:
    """The four arrays plus where they came from."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) int64
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) int64
    source: str = ""

    def subset(self, train_size: int | None = None, test_size: int | None = None) -> "FashionMNIST":
        """The first `train_size` / `test_size` samples in file order (None keeps all)."""
        return FashionMNIST(
            self.train_images[:train_size],
            self.train_labels[:train_size],
            self.test_images[:test_size],
            self.test_labels[:test_size],
            self.source,
        )


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (..., 28, 28) -> float32 in [0, 1], bit for bit what torchvision's ToTensor gives."""
    # ToTensor divides by 255 (it does not multiply by 1/255), so do the same.
    return images.astype(np.float32) / np.float32(255)


# --------------------------------------------------------------------------- IDX parsing


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode one IDX blob, checking magic number, type code, dimensions and length."""
    if len(raw) < 4:
        raise DataError(f"{name}: {len(raw)} bytes is too short for an IDX header")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{name}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN with a known "
            f"type code TT and NN >= 1 dimensions); the file is not IDX data"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: header promises {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{name}: header says shape {dims} ({expected} bytes in all) but the file has {len(raw)} bytes; "
            "it is truncated or padded"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def encode_idx(array: np.ndarray) -> bytes:
    """The inverse of `parse_idx` (used by the tests and handy for making small IDX files)."""
    array = np.asarray(array)
    for code, dtype in _IDX_DTYPES.items():
        if dtype.kind == array.dtype.kind and dtype.itemsize == array.dtype.itemsize:
            break
    else:
        raise ValueError(f"no IDX type code for dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(dtype, copy=False).tobytes()


def read_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file, `.gz` or plain."""
    path = Path(path)
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: not a readable gzip file ({e}); it is truncated or corrupt: delete it and fetch it again"
        ) from None


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------- finding


def file_in(directory: Path, name: str) -> Path | None:
    """`name.gz` or `name` inside `directory`, whichever exists (gzip first)."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _complete(directory: Path) -> bool:
    return all(file_in(directory, name) for name in FILES)


def _how_to_get_it() -> str:
    return (
        f"get the data in one of three ways: (1) `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, "
        f"offline-friendly, installs into {DEBIAN_DIR}); (2) `python -m data --download` (fills {CACHE_DIR}); "
        f"(3) copy the four IDX files ({', '.join(FILES)}, .gz or not) into a folder and pass it with "
        f"--data-dir or ${ENV_VAR}"
    )


def find_data_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> tuple[Path, str]:
    """Where the four files are, and how that place was chosen.

    Order: the explicit `data_dir`, then $FASHION_MNIST_DIR, the repo-local cache, the Debian
    package's folder, and else a download into the cache. A folder named explicitly (argument or
    environment) must hold the files: it is never silently passed over.
    """
    explicit = [(data_dir, "--data-dir"), (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")]
    for directory, how in explicit:
        if directory is None:
            continue
        directory = Path(directory).expanduser()
        if not _complete(directory):
            missing = [n for n in FILES if not file_in(directory, n)]
            raise DataError(
                f"{how} points at {directory}, which lacks {', '.join(missing)} (as .gz or uncompressed IDX); "
                + _how_to_get_it()
            )
        return directory, how
    if _complete(CACHE_DIR):
        return CACHE_DIR, "repo cache"
    if _complete(DEBIAN_DIR):
        return DEBIAN_DIR, "Debian package dataset-fashion-mnist"
    looked = f"looked in ${ENV_VAR} (unset), {CACHE_DIR} and {DEBIAN_DIR}"
    if download:
        try:
            download_all(CACHE_DIR)
        except DataError as e:
            raise DataError(f"Fashion-MNIST not found: {looked}; the download failed too ({e}); " + _how_to_get_it()) from None
        return CACHE_DIR, "downloaded into the repo cache"
    raise DataError(f"Fashion-MNIST not found: {looked}; " + _how_to_get_it())


# --------------------------------------------------------------------------- downloading


def download_file(name: str, directory: Path, mirrors=MIRRORS, timeout: float = 30.0) -> Path:
    """Fetch `name.gz` from the first mirror that serves verified content; write it atomically."""
    errors = []
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
            content = gzip.decompress(payload)
        except (urllib.error.URLError, OSError, EOFError, zlib.error) as e:
            errors.append(f"{url}: {e}")
            continue
        got = sha256(content)
        if got != CHECKSUMS[name]:
            errors.append(f"{url}: checksum {got} != expected {CHECKSUMS[name]}")
            continue
        target = directory / f"{name}.gz"
        atomic_write(target, payload)
        return target
    raise DataError(f"could not download {name}: " + "; ".join(errors))


def download_all(directory: Path = CACHE_DIR, mirrors=MIRRORS) -> list[Path]:
    """Download whatever of the four files `directory` lacks; returns the files fetched."""
    return [download_file(n, Path(directory), mirrors) for n in FILES if not file_in(Path(directory), n)]


# --------------------------------------------------------------------------- verified, cached loading


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_verified(path: Path, expected_sha256: str | None, cache_dir: Path | None = CACHE_DIR) -> np.ndarray:
    """Decompress, verify and parse one file; reuse a decoded `.npy` keyed by checksum and file identity."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    npy = meta = None
    if cache_dir is not None and expected_sha256 is not None:
        npy = Path(cache_dir) / "decoded" / f"{name}-{expected_sha256[:16]}.npy"
        meta = npy.with_suffix(".json")
        try:
            if json.loads(meta.read_text()) == _stat_key(path):
                return np.load(npy)
        except (OSError, ValueError):
            pass  # no cache yet, or a stale or damaged one: decode afresh below
    raw = read_bytes(path)
    if expected_sha256 is not None:
        got = sha256(raw)
        if got != expected_sha256:
            raise DataError(
                f"{path}: checksum mismatch for {name} (SHA-256 of the decompressed content): expected "
                f"{expected_sha256}, got {got}; the file is corrupt or not Fashion-MNIST: delete it and fetch it again"
            )
    array = parse_idx(raw, str(path))
    if npy is not None:
        try:
            buffer = io.BytesIO()
            np.save(buffer, array)
            atomic_write(npy, buffer.getvalue())
            atomic_write(meta, json.dumps(_stat_key(path)).encode())
        except OSError:
            pass  # a read-only checkout only loses the speed-up
    return array


def _check_pair(images: np.ndarray, labels: np.ndarray, split: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{split} images: expected uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{split} labels: expected ({images.shape[0]},) to match the images, got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{split} labels: values outside 0..{len(CLASSES) - 1}")


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    checksums: dict[str, str] | None = CHECKSUMS,
    cache_dir: Path | None = CACHE_DIR,
) -> FashionMNIST:
    """Find, verify and parse the four files. `checksums=None` skips verification (tests only)."""
    directory, how = find_data_dir(data_dir, download)
    arrays = {}
    for name in FILES:
        expected = None if checksums is None else checksums[name]
        arrays[name] = load_verified(file_in(directory, name), expected, cache_dir)
    train = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"].astype(np.int64)
    test = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"].astype(np.int64)
    _check_pair(*train, "train")
    _check_pair(*test, "test")
    return FashionMNIST(*train, *test, source=f"{directory} ({how})")

