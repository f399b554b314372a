"""Seed sweeps (--seeds), the framework-neutral half: a Run per seed, one console, one aggregate.

Each seed S writes exactly the files a `--seed S` run writes, in OUT/seed-S/ (its own config.json,
metrics.jsonl, checkpoint, weights and plots), so a seed folder is a run folder for every tool
here (common.compare, --resume, --eval-only). OUT/seeds.json holds the aggregate: per-seed final
metrics, their mean, std, min and max, and the same per epoch. The frameworks supply an engine
that trains the seeds (flax_impl.sweep: vmapped or one after another; torch_impl.sweep: one after
another); `train_sweep` runs the epochs, the checkpoints and the files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from common.config import TrainConfig
from common.console import progress, say, seeds_phrase, sweep_line
from common.phases import CLOCK
from common.resume import CHECKPOINT, OutDirError, make_out_dir, peek, prepare_out_dir
from common.run_files import SEEDS_FILE, seed_dir, write_json_atomic
from common.run_lock import lock_out_dir
from common.runner import Run, compiled_line, header_line, model_lines, resume_warning
from common.summary import summarize
from data import FashionMNIST

METRICS = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")


def seed_config(config: TrainConfig, seed: int) -> TrainConfig:
    """The config of one seed: a `--seed S --out-dir OUT/seed-S` run that knows it is part of a sweep.

    With --resume, a seed whose folder has no checkpoint yet (the sweep was stopped before that
    seed's first epoch was saved) starts from its initialisation.
    """
    out = seed_dir(config.out_dir, seed)
    return replace(config, seed=seed, out_dir=str(out), quiet=True, seeds=None,
                   in_sweep={"seeds": config.seeds, "out_dir": config.out_dir},
                   resume=config.resume and (out / CHECKPOINT).is_file())


def prepare_sweep_dirs(config: TrainConfig) -> None:
    """Every seed folder made, locked and checked as a single run's --out-dir would be."""
    seeds = config.seeds
    if config.resume and not any((seed_dir(config.out_dir, s) / CHECKPOINT).is_file() for s in seeds):
        raise OutDirError(f"nothing to resume: no {CHECKPOINT} in {config.out_dir}/seed-*/ for seeds "
                          f"{format_seeds(seeds)}; drop --resume to start the sweep")
    finished = [s for s in seeds if config.resume and reached(seed_dir(config.out_dir, s), config.epochs)]
    if finished == seeds:
        raise OutDirError(f"{config.out_dir} holds a finished sweep of {config.epochs} epochs or more; to extend it, "
                          f"resume with a larger --epochs")
    for s in seeds:
        out = make_out_dir(seed_dir(config.out_dir, s))
        lock_out_dir(out)
        if s not in finished:  # a seed the sweep finished before it was stopped has nothing to prepare
            one = seed_config(config, s)
            prepare_out_dir(one, overwrite=config.overwrite, resume=one.resume)


def reached(folder: Path, epochs: int) -> bool:
    """The seed folder holds a finished run of `epochs` epochs or more."""
    meta = peek(folder / CHECKPOINT)
    return (folder / "summary.json").is_file() and meta is not None and int(meta["epoch"]) >= epochs


def format_seeds(seeds: list[int]) -> str:
    """0,1,2,3,7 -> '0-3,7'."""
    parts, start = [], 0
    for i in range(1, len(seeds) + 1):
        if i == len(seeds) or seeds[i] != seeds[i - 1] + 1:
            a, b = seeds[start], seeds[i - 1]
            parts.append(f"{a}" if a == b else f"{a}-{b}")
            start = i
    return ",".join(parts)


class Engine(Protocol):
    """What a framework provides to train the seeds of a sweep (index i: the i-th of --seeds)."""

    mode: str  # how the seeds train: "vmap" (together) or "sequential" (one after another)

    def restore(self, i: int, ckpt) -> None: ...

    def train_epoch(self, epoch: int, active: list[int], bar, runs: list[Run]) -> dict[int, tuple[float, int]]:
        """Train the active seeds one epoch: {i: (train loss, train correct)}; a non-finite loss
        raises through runs[i].check_finite."""

    def evaluate(self) -> list[tuple[float, int, np.ndarray]]:
        """Every seed's (test loss, test correct, predictions)."""

    def checkpoint(self, i: int) -> tuple[int, dict, dict, dict]:
        """Seed i's Adam step, weights, exp_avg and exp_avg_sq in torch's layout, as NumPy."""

    def weights(self, i: int) -> dict: ...


class Sweep:
    """The Runs of a sweep's seeds, each quiet, and the sweep's own console and seeds.json."""

    def __init__(self, config: TrainConfig, framework: str, versions: dict[str, str], device: str,
                 environment: dict | None = None):
        self.config = config
        self.seeds: list[int] = config.seeds
        self.framework = framework
        self.out = Path(config.out_dir)
        self.runs = [Run(seed_config(config, s), framework, versions, device, environment, announce=False)
                     for s in self.seeds]
        self.epoch_seconds: list[float] = []
        self.mode = ""
        self._start = 0.0
        say(header_line(framework, versions, device), config.quiet)

    def describe(self, summary: str, num_params: int, dataset: FashionMNIST, mode: str, why: str) -> None:
        self.mode = mode
        for run in self.runs:
            run.describe_model(summary, num_params, dataset)
        say(model_lines(summary, num_params, dataset), self.config.quiet)
        say(f"sweep: {seeds_phrase(len(self.seeds))} ({format_seeds(self.seeds)}), {mode} ({why}); "
            f"files in {self.out}/seed-S/ and {self.out / SEEDS_FILE}", self.config.quiet)

    def resume(self, engine: Engine) -> list[int]:
        """Each seed's completed epochs (0: starts fresh); checkpointed seeds are restored into the engine."""
        checkpoints = [run.load_resume_checkpoint() for run in self.runs]
        for i, ckpt in enumerate(checkpoints):
            if ckpt is not None:
                engine.restore(i, ckpt)
        done = [0 if ckpt is None else ckpt.epoch for ckpt in checkpoints]
        if self.config.resume:
            say("resuming: " + ", ".join(f"seed {s} after epoch {d}" for s, d in zip(self.seeds, done)),
                self.config.quiet)
            changed = next((c.changed for c in checkpoints if c is not None and c.changed), {})
            if changed:
                print(resume_warning(changed, "the sweep", "each seed's config.json records"), file=sys.stderr,
                      flush=True)
        return done

    def compiled(self, seconds: float, how: str = "") -> None:
        for run in self.runs:
            run.compiled(seconds, how)
        say(compiled_line(seconds, how), self.config.quiet)

    def epoch_bar(self, epoch: int, batches: int):
        self._start = time.perf_counter()
        description = f"epoch {epoch}/{self.config.epochs} ({seeds_phrase(len(self.seeds))})"
        return progress(batches, description, self.config.quiet)

    def end_epoch(self, epoch: int, results: dict[int, tuple], num_train: int, num_test: int) -> None:
        """results: {i: (train loss, train correct, test loss, test correct)} of the seeds that trained."""
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(round(seconds, 4))
        for i, (train_loss, train_correct, test_loss, test_correct) in results.items():
            self.runs[i].end_epoch(epoch, train_loss, train_correct, num_train, test_loss, test_correct, num_test,
                                   seconds=seconds)
        records = [run.records[-1] for run in self.runs if run.records and run.records[-1]["epoch"] == epoch]
        say(sweep_line(epoch, self.config.epochs, records, seconds), self.config.quiet)
        with CLOCK("write"):
            self.write_seeds_json(complete=False)

    def write_seeds_json(self, complete: bool) -> dict:
        """OUT/seeds.json: per-seed final metrics and their mean, std, min, max; the same per epoch."""
        epochs = min(len(run.records) for run in self.runs)
        per_epoch = [{"epoch": e, **{m: summarize([run.records[e - 1][m] for run in self.runs]) for m in METRICS}}
                     for e in range(1, epochs + 1)]
        last = {str(s): ({m: run.records[-1][m] for m in (*METRICS, "test_correct", "epoch")} if run.records else None)
                for s, run in zip(self.seeds, self.runs)}
        record = {
            "framework": self.framework, "seeds": self.seeds, "mode": self.mode, "complete": complete,
            "epochs": self.config.epochs, "epochs_done_by_all": epochs,
            "final": per_epoch[-1] if complete and per_epoch else None,
            "per_seed": last, "per_epoch": per_epoch,
            # The sweep's wall time per epoch, all seeds together (each seed folder's timings say the same).
            "epoch_seconds": self.epoch_seconds,
            "compile_seconds": self.runs[0].compile_seconds,
        }
        if self.runs[0].main:
            write_json_atomic(self.out / SEEDS_FILE, record)
        return record

    def finish(self, engine: Engine, dataset: FashionMNIST, predictions: list[np.ndarray]) -> dict:
        for i, run in enumerate(self.runs):
            with CLOCK("write"):
                weights = engine.weights(i)
            run.finish(weights, dataset.test_images, dataset.test_labels, predictions[i])
        record = self.write_seeds_json(complete=True)
        acc = record["final"]["test_accuracy"]
        print(f"final test accuracy over {seeds_phrase(len(self.seeds))}: {100 * acc['mean']:.2f}% "
              f"+- {100 * acc['std']:.2f} "
              f"(min {100 * acc['min']:.2f}%, max {100 * acc['max']:.2f}%); files in {self.out}/", flush=True)
        return record


def train_sweep(config: TrainConfig, dataset: FashionMNIST, sweep: Sweep, engine: Engine, steps: int) -> dict:
    """The epochs of a sweep: train the seeds that need the epoch, evaluate, checkpoint each, finish."""
    done = sweep.resume(engine)
    n, num_test = len(dataset.train_labels), len(dataset.test_labels)
    predictions = None
    for epoch in range(min(done) + 1, config.epochs + 1):
        active = [i for i, d in enumerate(done) if d < epoch]  # all, unless a resume found seeds at different epochs
        with sweep.epoch_bar(epoch, steps * len(active)) as bar, CLOCK("train"):
            trained = engine.train_epoch(epoch, active, bar, sweep.runs)
        with CLOCK("evaluate"):
            evaluated = engine.evaluate()
        predictions = [p for _, _, p in evaluated]
        sweep.end_epoch(epoch, {i: (*trained[i], *evaluated[i][:2]) for i in active}, n, num_test)
        for i in active:
            with CLOCK("write"):
                arrays = engine.checkpoint(i)
            sweep.runs[i].save_checkpoint(epoch, *arrays)
            done[i] = epoch
    if predictions is None:  # resumed after the last epoch's checkpoints: nothing left to train
        with CLOCK("evaluate"):
            predictions = [p for _, _, p in engine.evaluate()]
    return sweep.finish(engine, dataset, predictions)


def interrupted_sweep_message(prog: str, config: TrainConfig, resume_command: str) -> str:
    """What a Ctrl-C of a sweep says: how far each seed got, and the command that continues it."""
    seeds = config.seeds
    metas = {s: peek(seed_dir(config.out_dir, s) / CHECKPOINT) for s in seeds}
    if all(m is None for m in metas.values()):
        return f"interrupted before the first epoch finished: no checkpoint in {config.out_dir}/seed-*/; start again"
    epochs = sorted({int(m["epoch"]) for m in metas.values() if m})
    where = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]} to {epochs[-1]}"
    return (f"interrupted; the last checkpoints are in {config.out_dir}/seed-*/ ({where} of {config.epochs} done); "
            f"resume with: {resume_command}")
