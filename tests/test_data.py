"""The shared loader: IDX round trip, every error path, batching, and the real files."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import data.fashion_mnist as fm
from data import (
    CHECKSUMS,
    CLASSES,
    FILES,
    DataError,
    encode_idx,
    epoch_order,
    eval_batches,
    load_fashion_mnist,
    num_batches,
    parse_idx,
    to_float,
    train_batches,
)
from tests.helpers import write_tiny_idx

REPO = Path(__file__).resolve().parents[1]


def tiny_checksums(arrays: dict) -> dict:
    return {name: hashlib.sha256(encode_idx(a)).hexdigest() for name, a in arrays.items()}


@pytest.fixture
def no_default_sources(tmp_path, monkeypatch):
    """Point the cache and the Debian folder at empty places so only explicit folders count."""
    monkeypatch.setattr(fm, "CACHE_DIR", tmp_path / "empty-cache")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.delenv(fm.ENV_VAR, raising=False)


# ----------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(dtype):
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    b = parse_idx(encode_idx(a))
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_wrong_magic_number():
    raw = bytearray(encode_idx(np.zeros((2, 28, 28), np.uint8)))
    raw[0] = 0x1F
    with pytest.raises(DataError, match="magic number"):
        parse_idx(bytes(raw), "x")
    raw[0], raw[2] = 0, 0x42  # unknown type code
    with pytest.raises(DataError, match="magic number"):
        parse_idx(bytes(raw), "x")


def test_size_not_matching_header():
    raw = encode_idx(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="truncated or padded"):
        parse_idx(raw[:-1], "short")
    with pytest.raises(DataError, match="truncated or padded"):
        parse_idx(raw + b"\0", "long")


def test_to_float_is_exact_division():
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    f = to_float(images)
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_array_equal(f, np.arange(256, dtype=np.float32).reshape(1, 16, 16) / np.float32(255))


# ----------------------------------------------------------------------------- finding and verifying


@pytest.mark.parametrize("gz", [True, False])
def test_load_tiny_round_trip(tmp_path, no_default_sources, gz):
    arrays = write_tiny_idx(tmp_path / "d", gz=gz)
    ds = load_fashion_mnist(tmp_path / "d", checksums=tiny_checksums(arrays), cache_dir=None)
    np.testing.assert_array_equal(ds.train_images, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert ds.train_labels.dtype == np.int64 and ds.train_images.dtype == np.uint8
    assert "--data-dir" in ds.source


def test_env_var_is_used_and_explicit_wins(tmp_path, no_default_sources, monkeypatch):
    a = write_tiny_idx(tmp_path / "env", n_train=10, seed=1)
    b = write_tiny_idx(tmp_path / "arg", n_train=12, seed=2)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "env"))
    ds = load_fashion_mnist(checksums=None, cache_dir=None)
    assert len(ds.train_labels) == 10 and "FASHION_MNIST_DIR" in ds.source
    ds = load_fashion_mnist(tmp_path / "arg", checksums=None, cache_dir=None)
    assert len(ds.train_labels) == 12
    np.testing.assert_array_equal(ds.train_images, b["train-images-idx3-ubyte"])
    del a


def test_search_order_cache_before_debian(tmp_path, monkeypatch):
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    write_tiny_idx(tmp_path / "cache", n_train=10)
    write_tiny_idx(tmp_path / "debian", n_train=20)
    monkeypatch.setattr(fm, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    assert fm.find_data_dir()[0] == tmp_path / "cache"
    (tmp_path / "cache" / "train-labels-idx1-ubyte.gz").unlink()  # incomplete cache is passed over
    assert fm.find_data_dir()[0] == tmp_path / "debian"


def test_missing_files_message_lists_places_and_remedies(tmp_path, no_default_sources):
    with pytest.raises(DataError) as e:
        load_fashion_mnist(download=False)
    msg = str(e.value)
    assert "\n" not in msg
    for needle in ("empty-cache", "no-debian", "FASHION_MNIST_DIR", "apt-get install dataset-fashion-mnist",
                   "python -m data --download", "--data-dir"):
        assert needle in msg


def test_explicit_folder_missing_a_file_is_an_error(tmp_path, no_default_sources):
    write_tiny_idx(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path / "d", checksums=None)


def test_truncated_gzip(tmp_path, no_default_sources):
    arrays = write_tiny_idx(tmp_path / "d")
    p = tmp_path / "d" / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_fashion_mnist(tmp_path / "d", checksums=tiny_checksums(arrays), cache_dir=None)


def test_corrupt_gzip(tmp_path, no_default_sources):
    arrays = write_tiny_idx(tmp_path / "d")
    p = tmp_path / "d" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[12:20] = b"garbage!"
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: not a readable gzip"):
        load_fashion_mnist(tmp_path / "d", checksums=tiny_checksums(arrays), cache_dir=None)


def test_checksum_mismatch_names_file_expected_and_got(tmp_path, no_default_sources):
    write_tiny_idx(tmp_path / "d")
    with pytest.raises(DataError) as e:
        load_fashion_mnist(tmp_path / "d", cache_dir=None)  # the official checksums
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and CHECKSUMS["train-images-idx3-ubyte"] in msg
    got = hashlib.sha256(gzip.decompress((tmp_path / "d" / "train-images-idx3-ubyte.gz").read_bytes())).hexdigest()
    assert got in msg


def test_bad_file_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    """A corrupt cache never silently falls through to another source."""
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    arrays = write_tiny_idx(tmp_path / "cache")
    write_tiny_idx(tmp_path / "debian")
    monkeypatch.setattr(fm, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    p = tmp_path / "cache" / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(b"\0\0\x08\x03" + b"\0" * 20))
    with pytest.raises(DataError, match="t10k-images"):
        load_fashion_mnist(checksums=tiny_checksums(arrays), cache_dir=None)


def test_decoded_cache_is_used_and_invalidated(tmp_path, no_default_sources):
    arrays = write_tiny_idx(tmp_path / "d")
    sums = tiny_checksums(arrays)
    cache = tmp_path / "npy"
    load_fashion_mnist(tmp_path / "d", checksums=sums, cache_dir=cache)
    assert len(list((cache / "decoded").glob("*.npy"))) == 4
    # A file changed after caching must be read and verified again, not served from the cache.
    p = tmp_path / "d" / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(encode_idx(np.zeros((40, 28, 28), np.uint8))))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_fashion_mnist(tmp_path / "d", checksums=sums, cache_dir=cache)


def test_wrong_shapes_are_refused(tmp_path, no_default_sources):
    arrays = write_tiny_idx(tmp_path / "d")
    arrays["train-labels-idx1-ubyte"] = np.zeros(39, np.uint8)  # one label short
    (tmp_path / "d" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(arrays["train-labels-idx1-ubyte"])))
    with pytest.raises(DataError, match="train labels"):
        load_fashion_mnist(tmp_path / "d", checksums=None, cache_dir=None)


def test_download_writes_atomically_and_verifies(tmp_path, monkeypatch):
    """A local 'mirror' stands in for the network: good content lands, bad content never does."""
    mirror = tmp_path / "mirror"
    arrays = write_tiny_idx(mirror)
    monkeypatch.setattr(fm, "CHECKSUMS", tiny_checksums(arrays))
    target = tmp_path / "cache"
    bad = tmp_path / "bad"
    write_tiny_idx(bad, seed=7)  # valid gzip, wrong content
    fetched = fm.download_all(target, mirrors=(bad.as_uri() + "/", mirror.as_uri() + "/"))
    assert sorted(p.name for p in fetched) == sorted(f"{n}.gz" for n in FILES)
    assert not list(target.glob("*.part")) and not list(target.glob(".*"))
    for name in FILES:
        assert (target / f"{name}.gz").read_bytes() == (mirror / f"{name}.gz").read_bytes()
    other = tmp_path / "cache2"
    with pytest.raises(DataError, match="checksum"):
        fm.download_all(other, mirrors=(bad.as_uri() + "/",))
    assert not other.exists() or not any(other.iterdir())


# ----------------------------------------------------------------------------- batching


def test_epoch_order_is_deterministic_and_depends_on_seed_and_epoch():
    a = epoch_order(1000, seed=3, epoch=0)
    np.testing.assert_array_equal(a, epoch_order(1000, seed=3, epoch=0))
    assert not np.array_equal(a, epoch_order(1000, seed=3, epoch=1))
    assert not np.array_equal(a, epoch_order(1000, seed=4, epoch=0))


@pytest.mark.parametrize("n,bs", [(60000, 64), (100, 7), (64, 64), (5, 64)])
def test_every_index_exactly_once_and_last_partial_batch_kept(n, bs):
    batches = list(train_batches(n, bs, seed=0, epoch=2))
    assert len(batches) == num_batches(n, bs)
    assert all(len(b) == bs for b in batches[:-1])
    assert len(batches[-1]) == n - bs * (len(batches) - 1)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))


def test_eval_batches_in_file_order():
    np.testing.assert_array_equal(np.concatenate(list(eval_batches(1000, 64))), np.arange(1000))
    assert len(list(eval_batches(1000, 64))[-1]) == 1000 - 64 * 15


def test_data_package_imports_neither_torch_nor_jax():
    code = "import sys, data, data.__main__; print(any(m in sys.modules for m in ('torch', 'jax')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- the real files


@pytest.mark.realdata
def test_real_counts_and_classes(real_data):
    assert real_data.train_images.shape == (60000, 28, 28) and real_data.test_images.shape == (10000, 28, 28)
    assert np.bincount(real_data.train_labels).tolist() == [6000] * 10
    assert np.bincount(real_data.test_labels).tolist() == [1000] * 10
    assert len(CLASSES) == 10 and CLASSES[0] == "T-shirt/top" and CLASSES[9] == "Ankle boot"


@pytest.mark.realdata
def test_real_checksums_of_decompressed_content(real_data):
    directory = Path(real_data.source.split(" (")[0])
    for name in FILES:
        raw = fm.read_bytes(fm.file_in(directory, name))
        assert hashlib.sha256(raw).hexdigest() == CHECKSUMS[name]


@pytest.mark.realdata
def test_real_matches_torchvision_to_tensor(real_data, tmp_path):
    """torchvision's own reader + ToTensor, on the same files, gives bit-identical floats and labels."""
    torchvision = pytest.importorskip("torchvision")
    from torchvision.transforms import ToTensor

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    directory = Path(real_data.source.split(" (")[0])
    for name in FILES:
        (raw / name).write_bytes(fm.read_bytes(fm.file_in(directory, name)))
    for train, images, labels in ((True, real_data.train_images, real_data.train_labels),
                                  (False, real_data.test_images, real_data.test_labels)):
        tv = torchvision.datasets.FashionMNIST(str(tmp_path), train=train, download=False, transform=ToTensor())
        assert list(tv.classes) == list(CLASSES)
        np.testing.assert_array_equal(tv.targets.numpy(), labels)
        idx = np.r_[0:200, len(tv) - 200 : len(tv)]
        ours = to_float(images[idx])
        theirs = np.stack([tv[int(i)][0].numpy()[0] for i in idx])
        np.testing.assert_array_equal(ours, theirs)
        # The whole split through the same op ToTensor applies (uint8 -> float, / 255).
        np.testing.assert_array_equal(to_float(images), tv.data.float().div(255).numpy())
