"""One checkpoint format for both frameworks: safetensors in torch's state_dict layout. No pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from common.arch import VALID_KERNEL_SIZES, state_dict_shapes
from data.atomic import atomic_write


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the problem."""


def save_weights(path: str | os.PathLike, state_dict: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Atomically write float32 weights (torch layout) with string metadata."""
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state_dict.items()}
    atomic_write(path, st_save(tensors, metadata={k: str(v) for k, v in metadata.items()}))


def _guess_kernel_size(shapes: dict[str, tuple]) -> int | None:
    w = shapes.get("conv1.weight")
    if w is not None and len(w) == 4 and w[2] == w[3]:
        return int(w[2])
    return None


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file; truncation and foreign formats become CheckpointError."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {e}") from None
    try:
        return st_load(payload)
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({e}); it is truncated, corrupt or another format"
        ) from None


def check_weights(tensors: dict[str, np.ndarray], kernel_size: int, path: str = "checkpoint") -> None:
    """Names, shapes and dtype must be exactly those of the model at `kernel_size`."""
    expected = state_dict_shapes(kernel_size)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = ([f"missing tensors {missing}"] if missing else []) + ([f"unexpected tensors {extra}"] if extra else [])
        raise CheckpointError(f"{path}: {'; '.join(parts)}; it is not a checkpoint of this model")
    wrong = {k: (tuple(tensors[k].shape), expected[k]) for k in expected if tuple(tensors[k].shape) != expected[k]}
    if wrong:
        detail = ", ".join(f"{k} has shape {got}, expected {want}" for k, (got, want) in wrong.items())
        k = _guess_kernel_size({n: tuple(t.shape) for n, t in tensors.items()})
        hint = (f"; it looks like a checkpoint made with --kernel-size {k}, so pass that"
                if k in VALID_KERNEL_SIZES and k != kernel_size else "")
        raise CheckpointError(f"{path}: {detail}{hint}")
    bad_dtype = [k for k, t in tensors.items() if t.dtype != np.float32]
    if bad_dtype:
        raise CheckpointError(f"{path}: tensors {bad_dtype} are not float32")
    nonfinite = [k for k, t in tensors.items() if not np.all(np.isfinite(t))]
    if nonfinite:
        raise CheckpointError(f"{path}: tensors {nonfinite} hold NaN or infinity")


TRAINING_MODEL_PREFIX = "model."  # a training checkpoint's weights (common.resume), beside Adam's state


def load_weights(path: str | os.PathLike, kernel_size: int) -> dict[str, np.ndarray]:
    """Read and validate the model weights of a model.safetensors, or of a run's training checkpoint
    (checkpoint.safetensors: its `model.*` tensors), in torch state_dict layout."""
    tensors = read_safetensors(path)
    if any(k.startswith(TRAINING_MODEL_PREFIX) for k in tensors):
        tensors = {k[len(TRAINING_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(TRAINING_MODEL_PREFIX)}
    check_weights(tensors, kernel_size, str(path))
    return tensors


def checkpoint_kernel_size(path: str | os.PathLike | None) -> int | None:
    """The kernel size a checkpoint records (model.safetensors metadata, or a training checkpoint's
    config), else the one its conv1 weight's shape implies; None when there is nothing to read."""
    if not path:
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            conv1 = next((n for n in f.keys() if n.endswith("conv1.weight")), None)  # model. prefix or not
            shape = tuple(f.get_slice(conv1).get_shape()) if conv1 else None
    except Exception:  # noqa: BLE001 (an unreadable file is reported, with its reason, when it is loaded)
        return None
    for value in (meta.get("kernel_size"), json.loads(meta.get("config", "{}")).get("kernel_size")):
        try:
            k = int(value)
        except (TypeError, ValueError):
            continue
        if k in VALID_KERNEL_SIZES:
            return k
    k = _guess_kernel_size({"conv1.weight": shape}) if shape else None
    return k if k in VALID_KERNEL_SIZES else None
