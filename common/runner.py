"""The framework-neutral half of a training run: console output, run files, plots, checkpoint."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.checkpoint import save_weights
from common.config import TrainConfig
from common.console import epoch_line, progress, say
from common.interrupts import raise_if_requested
from common.phases import CLOCK
from common.plots import plot_curves, plot_predictions
from common.provenance import provenance
from common.resume import (CHECKPOINT, TrainingCheckpoint, drop_set_aside, load_training_checkpoint,
                           save_training_checkpoint)
from common.run_files import RunWriter
from data import FashionMNIST

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
        self.main = config.rank == 0
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
        origin = provenance(self.config.argv)
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
        who = f"seed {self.config.seed}: " if self.config.in_sweep else ""
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
        raise_if_requested()  # a Ctrl-C that a garbage-collection callback swallowed stops the run here
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


def report_eval(framework: str, checkpoint: str, loss: float, correct: int, total: int) -> dict:
    """The one line --eval-only prints, and the numbers behind it."""
    print(f"{framework}: checkpoint {checkpoint}: test loss {loss:.4f}, test accuracy {100 * correct / total:.2f}% "
          f"({correct}/{total})", flush=True)
    return {"test_loss": float(loss), "test_correct": int(correct), "test_accuracy": correct / total}
