"""The framework-neutral half of a training run: console output, run files, plots, checkpoint."""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import numpy as np

from common.checkpoint import CheckpointError, save_weights
from common.config import TrainConfig, parse_config
from common.console import epoch_line, progress, say
from common.phases import CLOCK, process_age
from common.plots import plot_curves, plot_predictions
from common.provenance import provenance
from common.resume import (CHECKPOINT, OutDirError, TrainingCheckpoint, drop_set_aside, load_training_checkpoint,
                           make_out_dir, peek, prepare_out_dir, restore_set_aside, save_training_checkpoint)
from common.run_lock import RunLocked, lock_out_dir
from common.run_files import RunWriter
from data import DataError, FashionMNIST, load_fashion_mnist

NONFINITE_CHECK_EVERY = 100  # steps between host checks for a non-finite loss (one sync each)


class NonFiniteLoss(Exception):
    """Training diverged; the message says where and what to try."""


def header_line(framework: str, versions: dict[str, str], device: str) -> str:
    return f"{framework} | " + " ".join(f"{k} {v}" for k, v in versions.items()) + f" | device {device}"


def model_lines(summary: str, num_params: int, dataset: FashionMNIST) -> str:
    """The model, its parameter count and the data, as a run's console shows them."""
    return (f"{summary}\ntrainable parameters: {num_params:,}\n"
            f"data: {dataset.source}; train {len(dataset.train_labels):,}, test {len(dataset.test_labels):,}")


def compiled_line(seconds: float, how: str = "") -> str:
    return f"compiled train and eval steps in {seconds:.2f} s" + (f" ({how})" if how else "")


def resume_warning(changed: dict, so_far: str, recorded: str) -> str:
    """The warning for a resume that changes --epochs or --lr: {key: (was, now)}."""
    changes = ", ".join(f"--{k} {now:g} ({so_far} so far: {was:g})" for k, (was, now) in changed.items())
    return f"warning: resuming with {changes}; {recorded} the new segment"


class Run:
    """One training run's bookkeeping; the framework code only computes numbers and hands them here."""

    def __init__(self, config: TrainConfig, framework: str, versions: dict[str, str], device: str,
                 environment: dict | None = None, announce: bool = True):
        # Data-parallel runs: only the first process (rank 0) prints and writes files.
        self.main = config.extra.get("rank", 0) == 0
        self.announce = announce  # False for a seed of a sweep (common.sweep), whose console is the sweep's
        self.config = config if self.main else replace(config, quiet=True)
        self.framework = framework
        self.device = device
        self.writer = RunWriter(config.out_dir, enabled=self.main)
        self.records: list[dict] = []
        self.compile_seconds: float | None = None
        self._epoch_start = 0.0
        self.checkpoint_path = Path(config.out_dir) / CHECKPOINT
        self.checkpoint_epoch = 0
        # Validate a --resume checkpoint before touching any file, so a refused resume loses nothing.
        self._resume = load_training_checkpoint(self.checkpoint_path, config) if config.resume else None
        if self.main:
            self.writer.write_config(self._config_record(versions, device, environment or {}))
        self.writer.start_metrics()
        say(header_line(framework, versions, device), self.config.quiet or not announce)

    def _config_record(self, versions: dict, device: str, environment: dict) -> dict:
        """config.json: every setting, versions, device, environment and provenance, written at the
        run's start; a resume keeps what the run recorded and appends a segment for itself."""
        origin = provenance(self.config.extra.get("argv"))
        segment = {"from_epoch": 0, "epochs": self.config.epochs, "lr": self.config.lr, "command": origin["command"],
                   "git": origin["git"], "started": origin["started"], "versions": versions, "device": device}
        path = Path(self.config.out_dir) / "config.json"
        if self._resume is not None and path.is_file():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                record = None
            if isinstance(record, dict):
                segment.update(from_epoch=self._resume.epoch,
                               changed={k: {"was": a, "now": b} for k, (a, b) in self._resume.changed.items()})
                record.update(epochs=self.config.epochs, lr=self.config.lr)
                record.setdefault("segments", []).append(segment)
                return record
        return {**self.config.to_dict(), "versions": versions, "device": device, "environment": environment,
                "python": platform.python_version(), "machine": platform.machine(),
                "processor": platform.processor() or platform.machine(), "provenance": origin,
                "segments": [segment]}

    def describe_model(self, summary: str, num_params: int, dataset: FashionMNIST) -> None:
        self.num_params = num_params
        say(model_lines(summary, num_params, dataset), self.config.quiet)

    def load_resume_checkpoint(self) -> TrainingCheckpoint | None:
        """With --resume: the last complete epoch's state, whose metrics and timings this run takes over."""
        ckpt = self._resume
        if ckpt is None:
            return None
        self.records = list(ckpt.metrics)
        self.writer.restore(self.records, ckpt.timings)
        self.checkpoint_epoch = ckpt.epoch
        say(f"resuming from {self.checkpoint_path}: epoch {ckpt.epoch} of {self.config.epochs} done", self.config.quiet)
        if ckpt.changed and self.main and self.announce:
            print(resume_warning(ckpt.changed, "the run", "config.json records"), file=sys.stderr, flush=True)
        return ckpt

    def save_checkpoint(self, epoch: int, adam_step: int, weights: dict, exp_avg: dict, exp_avg_sq: dict) -> None:
        """The end-of-epoch training checkpoint (atomic), from which --resume continues."""
        with CLOCK("write"):
            self._save_checkpoint(epoch, adam_step, weights, exp_avg, exp_avg_sq)

    def _save_checkpoint(self, epoch, adam_step, weights, exp_avg, exp_avg_sq) -> None:
        if self.main:
            save_training_checkpoint(self.config.out_dir, self.config, epoch, adam_step, weights, exp_avg,
                                     exp_avg_sq, self.records, self.writer.timings)
            drop_set_aside(Path(self.config.out_dir))  # an --overwrite's previous run is no longer needed
        self.checkpoint_epoch = epoch

    def check_finite(self, first_bad_step: int, epoch: int, steps_per_epoch: int) -> None:
        """first_bad_step: 0-based index within the epoch of the first non-finite loss, or -1."""
        if first_bad_step < 0:
            return
        who = f"seed {self.config.seed}: " if "sweep" in self.config.extra else ""
        kept = (f"the last good checkpoint, {self.checkpoint_path} (epoch {self.checkpoint_epoch}), is kept"
                if self.checkpoint_epoch else "no epoch had finished, so no checkpoint was written")
        how = (f"resume from it with a lower --lr (add --resume --lr {self.config.lr / 10:g} to the command)"
               if self.checkpoint_epoch else f"start again with a lower --lr (e.g. {self.config.lr / 10:g})")
        raise NonFiniteLoss(
            f"{who}the training loss became non-finite at epoch {epoch}, step {first_bad_step + 1} of {steps_per_epoch}; "
            f"training stopped and no weights of this epoch were written; {kept}; the learning rate "
            f"({self.config.lr:g}) is probably too high: {how}"
        )

    def compiled(self, seconds: float, how: str = "") -> None:
        """Compile time, reported on its own line and kept out of the first epoch's time."""
        self.compile_seconds = seconds
        self.writer.set_compile_seconds(seconds)
        say(compiled_line(seconds, how), self.config.quiet)

    def epoch_bar(self, epoch: int, batches: int):
        self._epoch_start = time.perf_counter()
        return progress(batches, f"epoch {epoch}/{self.config.epochs}", self.config.quiet)

    def end_epoch(self, epoch: int, train_loss: float, train_correct: int, num_train: int,
                  test_loss: float, test_correct: int, num_test: int, seconds: float | None = None) -> dict:
        """Record and print an epoch; seconds: since epoch_bar began, unless given (a sweep's epoch)."""
        seconds = time.perf_counter() - self._epoch_start if seconds is None else seconds
        record = {
            "epoch": epoch,
            "train_loss": float(train_loss),
            "train_accuracy": train_correct / num_train,
            "test_loss": float(test_loss),
            "test_accuracy": test_correct / num_test,
            "test_correct": int(test_correct),
        }
        self.records.append(record)
        with CLOCK("write"):
            self.writer.log_epoch(record, seconds)
        say(epoch_line(record, self.config.epochs, seconds), self.config.quiet)
        return record

    def finish(self, state_dict: dict[str, np.ndarray], test_images: np.ndarray, test_labels: np.ndarray,
               predictions: np.ndarray) -> dict:
        """Write weights, plots and summary.json; print the final accuracy."""
        with CLOCK("write"):
            summary = self._finish(state_dict, test_images, test_labels, predictions)
        if self.main:
            self.writer.write_phases(CLOCK.rounded())
        return summary

    def _finish(self, state_dict, test_images, test_labels, predictions) -> dict:
        out = Path(self.config.out_dir)
        last = self.records[-1]
        if not self.main:
            return {"test_accuracy": last["test_accuracy"], "test_correct": last["test_correct"]}
        save_weights(out / "model.safetensors", state_dict,
                     {"framework": self.framework, "kernel_size": self.config.kernel_size,
                      "epochs": self.config.epochs, "seed": self.config.seed})
        title = f"{self.framework}, {len(self.records)} epochs"
        plot_predictions(test_images, predictions, test_labels, out / "predictions.png", title)
        plot_curves({self.framework: self.records}, out / "curves.png", title)
        epoch_seconds = self.writer.timings["epoch_seconds"]
        summary = {
            "framework": self.framework,
            "device": self.device,
            "parameters": self.num_params,
            "test_accuracy": last["test_accuracy"],
            "test_correct": last["test_correct"],
            "test_loss": last["test_loss"],
            "epochs": len(self.records),
            "compile_seconds": self.compile_seconds,
            "mean_epoch_seconds": float(np.mean(epoch_seconds)),
            "total_seconds": float(np.sum(epoch_seconds)) + (self.compile_seconds or 0.0),
        }
        self.writer.write_summary(summary)
        if self.announce:
            print(f"final test accuracy: {100 * last['test_accuracy']:.2f}% ({last['test_correct']}/"
                  f"{len(test_labels)}); files in {out}/", flush=True)
        return summary


def load_data(config: TrainConfig) -> FashionMNIST:
    with CLOCK("data"):
        return load_fashion_mnist(config.data_dir).subset(config.train_size, config.test_size)


def resume_command(prog: str, argv: list[str]) -> str:
    """The command that continues an interrupted run: the same flags, plus --resume, quoted for a shell."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return " ".join([prog, shlex.join([*args, "--resume"])])


def interrupted_message(prog: str, config: TrainConfig, argv: list[str]) -> str:
    ckpt = Path(config.out_dir) / CHECKPOINT
    meta = peek(ckpt)
    if meta is None:
        return (f"interrupted before the first epoch finished: no checkpoint in {config.out_dir}; start again with: "
                f"{prog} {shlex.join(argv)}")
    return (f"interrupted; the last checkpoint is {ckpt} (epoch {meta['epoch']} of {config.epochs} done); "
            f"resume with: {resume_command(prog, argv)}")


def cli(parser: argparse.ArgumentParser, framework: str, argv: list[str] | None,
        resolve_device: Callable[[TrainConfig], object],
        train: Callable[[TrainConfig, FashionMNIST, object], dict],
        evaluate_checkpoint: Callable[[TrainConfig, FashionMNIST, object], dict],
        train_seeds: Callable[[TrainConfig, FashionMNIST, object], dict]) -> int:
    """Parse, pick the device, load the data, then train (one seed or a --seeds sweep) or evaluate;
    user errors never show a traceback."""
    from common import sweep  # here: common.sweep builds on this module's Run

    CLOCK.reset()
    CLOCK.add("import", process_age())  # interpreter start-up and imports: all that ran before this
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(parser, framework, argv)
    try:
        with CLOCK("init"):
            device = resolve_device(config)  # may join a distributed run and set config.extra["rank"]
    except ValueError as e:
        parser.error(str(e))
    config.extra["argv"] = [*parser.prog.split()[1:], *argv]  # provenance: -m MODULE and the flags as typed
    out = Path(config.out_dir)
    seeds = config.extra.get("seeds")
    folders = [sweep.seed_dir(out, s) for s in seeds] if seeds else [out]  # where a run's files go
    writes = not config.eval_only and config.extra.get("rank", 0) == 0
    owned = False  # this process holds the folder's lock: only then may it put a set-aside run back
    try:
        dataset = load_data(config)  # validated before anything in --out-dir is touched
        if writes:
            make_out_dir(out)
            lock_out_dir(out)  # one live run per folder; released by the OS however this process ends
            owned = True
            if seeds:
                sweep.prepare_sweep_dirs(config)
            else:
                prepare_out_dir(config, overwrite=config.overwrite, resume=config.resume)
        if config.eval_only:
            evaluate_checkpoint(config, dataset, device)
        elif seeds:
            train_seeds(config, dataset, device)
        else:
            train(config, dataset, device)
    except (CheckpointError, OutDirError, DataError, NonFiniteLoss, RunLocked) as e:
        parser.exit(1, f"{parser.prog}: error: {e}{put_back(folders, owned)}\n")
    except OSError as e:  # a full disk, a vanished folder, a permission: one line, what and why
        note = put_back(folders, owned)
        metas = [(f / CHECKPOINT, peek(f / CHECKPOINT)) for f in folders] if owned else []
        kept = "".join(f"; the last complete checkpoint, {path} (epoch {meta['epoch']}), is intact"
                       for path, meta in metas if meta)
        parser.exit(1, f"{parser.prog}: error: cannot write {e.filename or out}: {e.strerror or e}{kept}{note}\n")
    except KeyboardInterrupt:
        said = (sweep.interrupted_sweep_message(parser.prog, config, resume_command(parser.prog, argv)) if seeds
                else interrupted_message(parser.prog, config, argv))
        parser.exit(130, f"\n{parser.prog}: {said}{put_back(folders, owned)}\n")
    return 0


def exit_process(code: int) -> NoReturn:
    """End a command-line run. Its files are written and closed, so the interpreter's last garbage
    collection, which tears down everything the run built, is skipped (gc.freeze): on a 2-core CPU
    it took 0.29 s of a flax_impl run's exit and 0.77 s of torch_impl's (now 0.04 and 0.16 s)."""
    gc.freeze()
    sys.exit(code)


def put_back(folders: list[Path], owned: bool) -> str:
    """A run that ends before its first checkpoint puts back what its --overwrite set aside (only the
    process holding the folders' locks may); the words that say so, or nothing."""
    back = [f for f in folders if owned and restore_set_aside(f)]
    if not back:
        return ""
    return ("; the run that --overwrite was replacing is back in place" if len(back) == 1 and len(folders) == 1
            else f"; the runs that --overwrite was replacing are back in place in {len(back)} seed folders")


def report_eval(framework: str, checkpoint: str, loss: float, correct: int, total: int) -> dict:
    """The one line --eval-only prints, and the numbers behind it."""
    print(f"{framework}: checkpoint {checkpoint}: test loss {loss:.4f}, test accuracy {100 * correct / total:.2f}% "
          f"({correct}/{total})", flush=True)
    return {"test_loss": float(loss), "test_correct": int(correct), "test_accuracy": correct / total}
