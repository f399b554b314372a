"""The files a run leaves behind: config.json, metrics.jsonl, timings.json, summary.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from data.atomic import atomic_write


SEEDS_FILE = "seeds.json"  # a seed sweep's aggregate (common.sweep); its presence makes a folder a sweep


def seed_dir(out_dir: str | os.PathLike, seed: int) -> Path:
    """Where a sweep in out_dir keeps seed S's run: OUT/seed-S."""
    return Path(out_dir) / f"seed-{seed}"


def write_json_atomic(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class RunWriter:
    """Writes one run's files. metrics.jsonl holds only what is reproducible (no wall-clock times),
    so two runs with the same seed give byte-identical files; timings go to timings.json."""

    def __init__(self, out_dir: str | os.PathLike, enabled: bool = True):
        self.dir = Path(out_dir)
        self.enabled = enabled  # False on the non-zero ranks of a data-parallel run: nothing is written
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.timings = {"compile_seconds": None, "epoch_seconds": []}

    def write_config(self, config: dict) -> None:
        if not self.enabled:
            return
        write_json_atomic(self.dir / "config.json", config)

    def start_metrics(self) -> None:
        if not self.enabled:
            return
        self.metrics_path.write_text("")

    def restore(self, records: list[dict], timings: dict) -> None:
        """Take over a resumed run's epochs: metrics.jsonl exactly as the interrupted run wrote it."""
        self.timings = {"compile_seconds": None, "epoch_seconds": list(timings.get("epoch_seconds", []))}
        if not self.enabled:
            return
        self.metrics_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        write_json_atomic(self.dir / "timings.json", self.timings)

    def log_epoch(self, record: dict, seconds: float) -> None:
        self.timings["epoch_seconds"].append(round(seconds, 4))
        if not self.enabled:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        write_json_atomic(self.dir / "timings.json", self.timings)

    def set_compile_seconds(self, seconds: float) -> None:
        self.timings["compile_seconds"] = round(seconds, 4)
        if not self.enabled:
            return
        write_json_atomic(self.dir / "timings.json", self.timings)

    def write_phases(self, phases: dict[str, float]) -> None:
        """Seconds per phase of this process (import, data, init, compile, train, evaluate, write)."""
        self.timings["phases"] = phases
        if not self.enabled:
            return
        write_json_atomic(self.dir / "timings.json", self.timings)

    def write_summary(self, summary: dict) -> None:
        if not self.enabled:
            return
        write_json_atomic(self.dir / "summary.json", summary)


def read_run(run_dir: str | os.PathLike) -> dict:
    """config, metrics (a list of epoch records), timings and summary of a finished run folder."""
    run_dir = Path(run_dir)
    missing = [n for n in ("config.json", "metrics.jsonl", "summary.json") if not (run_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished run folder: missing {', '.join(missing)}")
    timings_path = run_dir / "timings.json"
    return {
        "dir": str(run_dir),
        "config": json.loads((run_dir / "config.json").read_text()),
        "metrics": [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line],
        "timings": json.loads(timings_path.read_text()) if timings_path.is_file() else {},
        "summary": json.loads((run_dir / "summary.json").read_text()),
    }
