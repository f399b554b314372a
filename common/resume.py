"""Per-epoch training checkpoints, resuming, and what may be written into an --out-dir.

One format for both frameworks: `checkpoint.safetensors` holds the weights and Adam's two moment
estimates in torch's state_dict layout (`model.*`, `adam.exp_avg.*`, `adam.exp_avg_sq.*`) and, as
metadata, the epoch, Adam's step count, the hyperparameters and the metrics so far. The batch order
is a pure function of (seed, epoch), so seed and epoch are the whole data-order and RNG position.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as st_save

from data.atomic import atomic_write
from common.checkpoint import CheckpointError, check_weights, read_safetensors
from common.config import TrainConfig

CHECKPOINT = "checkpoint.safetensors"
FORMAT = "fashion-parity-training-checkpoint/1"
GROUPS = ("model", "adam.exp_avg", "adam.exp_avg_sq")
# What must match for a resumed run to continue the same training (steps_per_dispatch does not
# change the math, so it may differ) ...
RESUME_KEYS = ("framework", "batch_size", "kernel_size", "seed", "train_size", "test_size", "init", "init_weights",
               "precision")
# Keys added after checkpoints were first written: an older checkpoint stands for their default.
RESUME_DEFAULTS = {"init_weights": None, "precision": "highest"}
# ... and what a resume may change, with a warning recorded in config.json's segments: the length
# of the run (extend a finished run) and the learning rate (continue after a divergence).
SCHEDULE_KEYS = ("epochs", "lr")
SET_ASIDE = ".replaced"  # where --overwrite keeps the previous run until the new one has a checkpoint
RUN_FILES = ("config.json", "metrics.jsonl", "timings.json", "summary.json", "model.safetensors",
             "predictions.png", "curves.png", CHECKPOINT)


class OutDirError(Exception):
    """The --out-dir holds a run that this command would overwrite or cannot continue."""


def resume_config(config: TrainConfig) -> dict:
    d = config.to_dict()
    return {k: d[k] for k in RESUME_KEYS + SCHEDULE_KEYS}


@dataclass
class TrainingCheckpoint:
    epoch: int
    adam_step: int
    weights: dict[str, np.ndarray]
    exp_avg: dict[str, np.ndarray]
    exp_avg_sq: dict[str, np.ndarray]
    metrics: list[dict]
    timings: dict
    changed: dict  # schedule keys this resume changes: {key: (the checkpoint's value, now)}


def save_training_checkpoint(out_dir: str | os.PathLike, config: TrainConfig, epoch: int, adam_step: int,
                             weights: dict, exp_avg: dict, exp_avg_sq: dict, metrics: list[dict],
                             timings: dict) -> Path:
    """Atomically replace out_dir/checkpoint.safetensors (temporary file, fsync, rename)."""
    tensors = {}
    for group, values in zip(GROUPS, (weights, exp_avg, exp_avg_sq)):
        for name, value in values.items():
            tensors[f"{group}.{name}"] = np.ascontiguousarray(value, dtype=np.float32)
    metadata = {
        "format": FORMAT,
        "epoch": str(epoch),
        "adam_step": str(adam_step),
        "config": json.dumps(resume_config(config), sort_keys=True),
        "metrics": json.dumps(metrics),
        "timings": json.dumps(timings),
    }
    path = Path(out_dir) / CHECKPOINT
    atomic_write(path, st_save(tensors, metadata=metadata))
    return path


def peek(path: str | os.PathLike) -> dict | None:
    """The metadata of a training checkpoint, or None where there is no readable one."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 (any unreadable file simply has nothing to show)
        return None
    return meta if meta.get("format") == FORMAT else None


def load_training_checkpoint(path: str | os.PathLike, config: TrainConfig) -> TrainingCheckpoint:
    """Read, validate and check against `config`; every problem is a CheckpointError naming it."""
    path = Path(path)
    tensors = read_safetensors(path)
    meta = peek(path)
    if meta is None:
        raise CheckpointError(f"{path}: not a training checkpoint of this project (no '{FORMAT}' metadata)")
    try:
        saved = json.loads(meta["config"])
        epoch, adam_step = int(meta["epoch"]), int(meta["adam_step"])
        metrics, timings = json.loads(meta["metrics"]), json.loads(meta["timings"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged metadata ({e})") from None
    wanted = resume_config(config)
    saved = {**RESUME_DEFAULTS, **saved}
    differ = [f"{k} (checkpoint {saved.get(k)!r}, now {wanted[k]!r})" for k in RESUME_KEYS if saved.get(k) != wanted[k]]
    if differ:
        raise CheckpointError(f"{path}: cannot resume with different hyperparameters: {', '.join(differ)}; "
                              "pass the original values (only --epochs and --lr may change), or --overwrite to "
                              "start a new run")
    changed = {k: (saved.get(k), wanted[k]) for k in SCHEDULE_KEYS if k in saved and saved[k] != wanted[k]}
    groups = {}
    for group in GROUPS:
        prefix = f"{group}."
        groups[group] = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        check_weights(groups[group], config.kernel_size, f"{path} [{group}]")
    unknown = sorted(k for k in tensors if not any(k.startswith(f"{g}.") for g in GROUPS))
    if unknown:
        raise CheckpointError(f"{path}: unexpected tensors {unknown}")
    if len(metrics) != epoch:
        raise CheckpointError(f"{path}: holds {len(metrics)} epochs of metrics for epoch {epoch}")
    if epoch > config.epochs:
        raise CheckpointError(f"{path}: the run has done {epoch} epochs already; --epochs {config.epochs} would "
                              f"shorten it: resume with --epochs {epoch} or more")
    return TrainingCheckpoint(epoch, adam_step, groups["model"], groups["adam.exp_avg"], groups["adam.exp_avg_sq"],
                              metrics, timings, changed)


def make_out_dir(out_dir: str | os.PathLike) -> Path:
    """The folder, made if needed; an OutDirError naming it and the reason otherwise."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutDirError(f"cannot create --out-dir {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutDirError(f"cannot write into --out-dir {out}: permission denied")
    return out


def set_aside(out: Path) -> None:
    """--overwrite: move the previous run's files into OUT/.replaced/ (kept until the new run's first
    checkpoint). If a set-aside run is already there, an earlier --overwrite died before its first
    checkpoint: the files beside it are that dead run's, and the set-aside run stays the one to keep."""
    aside = out / SET_ASIDE
    if aside.is_dir():
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        return
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present:
        aside.mkdir()
        for name in present:
            os.replace(out / name, aside / name)


def drop_set_aside(out: Path) -> None:
    """The new run has a checkpoint of its own: the previous run's files go."""
    aside = out / SET_ASIDE
    if aside.is_dir():
        for f in aside.iterdir():
            f.unlink()
        aside.rmdir()


def restore_set_aside(out: Path) -> bool:
    """A replacing run ended before its first checkpoint: put the previous run back. True if it did."""
    aside = out / SET_ASIDE
    if not aside.is_dir():
        return False
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for f in aside.iterdir():
        os.replace(f, out / f.name)
    aside.rmdir()
    return True


def prepare_out_dir(config: TrainConfig, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber a finished or unfinished run unless asked; --overwrite sets the old run aside.
    The folder exists already (make_out_dir) and this process holds its lock (common.run_lock)."""
    out = Path(config.out_dir)
    ckpt = out / CHECKPOINT
    if not overwrite and (out / SET_ASIDE).is_dir() and not ckpt.is_file():
        restore_set_aside(out)  # an --overwrite that died before its first checkpoint: nothing is lost
    finished = (out / "summary.json").is_file()
    if overwrite:
        set_aside(out)
        return
    if resume:
        if not ckpt.is_file():
            raise OutDirError(f"nothing to resume: {ckpt} does not exist; drop --resume to start a new run")
        meta = peek(ckpt)
        if finished and meta is not None and int(meta["epoch"]) >= config.epochs:
            raise OutDirError(f"{out} holds a finished run of {meta['epoch']} epochs; to extend it, resume with "
                              f"--epochs larger than {meta['epoch']}")
        return
    if finished:
        raise OutDirError(f"{out} holds a finished run; pass --overwrite to replace it, --resume --epochs N to "
                          "extend it, or choose another --out-dir")
    if ckpt.is_file():
        meta = peek(ckpt)
        where = f" (epoch {meta['epoch']} done)" if meta else ""
        raise OutDirError(f"{out} holds an unfinished run{where}; pass --resume to continue it, or --overwrite "
                          "to start over")
