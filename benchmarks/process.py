"""`python -m benchmarks.process`: what a user waits for, each run a fresh process timed from start to exit.

Rows: torch_impl, flax_impl with a cold and with a warm compilation cache, and the original example
(benchmarks/original_example.py), for a few epoch counts (1 and 3 on a CPU, 1 and 10 on a GPU).
Rows run in interleaved rounds (each round runs every row once, in a rotated order), after one
untimed warm-up round (at the shortest epoch count), so that a machine whose speed drifts slows every row alike; medians and
their spread are quoted, ratios are between medians of this run. Each trainer's run reports where
its seconds went (timings.json "phases"): import, data, init, compile, train, evaluate, write.
Writes OUT.md and OUT.json, again after every run: a benchmark stopped by a timeout keeps what it
measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.__main__ import detect_accelerator, machine, versions, write_report
from common.phases import PHASES

REPO = Path(__file__).resolve().parents[1]
ROWS = {
    "torch": "torch_impl",
    "flax-warm": "flax_impl, warm compilation cache",
    "flax-cold": "flax_impl, cold compilation cache",
    "nnx-warm": "flax_impl --api nnx, warm compilation cache",
    "original": "original example (benchmarks/original_example.py)",
}


def command(row: str, epochs: int, device: str, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    if row == "original":
        return [sys.executable, str(REPO / "benchmarks" / "original_example.py"), "--epochs", str(epochs),
                "--device", device, "--out", str(out / "predictions.png")]
    module = "torch_impl.train" if row == "torch" else "flax_impl.train"
    api = ["--api", "nnx"] if row.startswith("nnx") else []
    return [sys.executable, "-m", module, "--epochs", str(epochs), "--device", device, "--out-dir", str(out),
            "--overwrite", "--quiet", *api, *extra]


def run_once(row: str, epochs: int, device: str, work: Path, warm_cache: Path, extra: tuple[str, ...] = ()) -> dict:
    """One fresh process, timed from start to exit; its phases from its own timings.json."""
    out = Path(tempfile.mkdtemp(prefix=f"{row}-{epochs}-", dir=work))
    env = dict(os.environ)
    cold_cache = None
    if row in ("flax-warm", "nnx-warm"):
        env["FASHION_PARITY_JAX_CACHE"] = str(warm_cache)
    elif row == "flax-cold":
        cold_cache = Path(tempfile.mkdtemp(prefix="cold-cache-", dir=work))  # empty: every program compiles
        env["FASHION_PARITY_JAX_CACHE"] = str(cold_cache)
    start = time.perf_counter()
    proc = subprocess.run(command(row, epochs, device, out, extra), cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{row} ({epochs} epochs) failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    result = {"seconds": seconds}
    timings = out / "timings.json"
    if timings.is_file():
        result["phases"] = json.loads(timings.read_text()).get("phases")
        result["compile_line"] = next((line for line in proc.stdout.splitlines() if line.startswith("compiled")), None)
    summary = out / "summary.json"
    if summary.is_file():  # the result the user waited for: a 10-epoch row shows the recipe's accuracy band
        result["test_accuracy"] = json.loads(summary.read_text())["test_accuracy"]
    shutil.rmtree(out, ignore_errors=True)
    if cold_cache:
        shutil.rmtree(cold_cache, ignore_errors=True)
    return result


def accuracy_cell(values: list[float]) -> str:
    """The final test accuracy over the rounds: one value, or the range where runs differ (a GPU)."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    return f"{100 * lo:.2f}%" if lo == hi else f"{100 * lo:.2f}-{100 * hi:.2f}%"


def epoch_share_lines(summary: list[dict]) -> list[str]:
    """What each further epoch costs besides training: the difference between a row's longest and
    shortest runs (their start-up, compile and final files cancel), split into train, evaluate and
    write (the checkpoint and metrics); evaluation plus writing as a share of the epoch."""
    lines = []
    for row in dict.fromkeys(s["row"] for s in summary):
        runs = sorted((s for s in summary if s["row"] == row and s["phases"]), key=lambda s: s["epochs"])
        if len(runs) < 2 or runs[-1]["epochs"] == runs[0]["epochs"]:
            continue
        extra = runs[-1]["epochs"] - runs[0]["epochs"]
        per = {p: (runs[-1]["phases"][p] - runs[0]["phases"][p]) / extra for p in ("train", "evaluate", "write")}
        epoch = sum(per.values())
        if epoch <= 0:
            continue
        lines += ["", f"Each further epoch of {runs[0]['label']} (epochs {runs[0]['epochs']} -> {runs[-1]['epochs']}): "
                      f"{epoch:.3f} s, of which train {per['train']:.3f} s, evaluate {per['evaluate']:.3f} s, "
                      f"write (checkpoint, metrics) {per['write']:.3f} s: evaluation plus writing "
                      f"{100 * (per['evaluate'] + per['write']) / epoch:.0f}% of the epoch."]
    return lines


def report(results: dict[tuple[str, int], list[dict]], device: str, env: dict, args: argparse.Namespace,
           quiet: bool = False) -> None:
    """OUT.md and OUT.json from the runs so far (rows without a run yet are left out); env: the
    machine and versions, found once."""
    rounds = max(len(runs) for runs in results.values())
    if not rounds:
        return
    if min(len(runs) for runs in results.values()) < rounds:
        rounds = f"{min(len(runs) for runs in results.values())}-{rounds} (cut short)"
    summary = []
    for epochs in dict.fromkeys(e for _, e in results):
        done = {row: runs for (row, e), runs in results.items() if e == epochs and runs}
        medians = {row: statistics.median(r["seconds"] for r in runs) for row, runs in done.items()}
        for row, runs in done.items():
            seconds = [r["seconds"] for r in runs]
            phases = None
            if all(r.get("phases") for r in runs):
                phases = {p: statistics.median(r["phases"][p] for r in runs) for p in PHASES}
            summary.append({
                "row": row, "label": ROWS[row], "epochs": epochs, "device": device, "seconds": seconds,
                "median_seconds": medians[row], "min_seconds": min(seconds), "max_seconds": max(seconds),
                "phases": phases, "compile_lines": [r.get("compile_line") for r in runs],
                "test_accuracy": sorted({r["test_accuracy"] for r in runs if "test_accuracy" in r}),
                "vs_torch_impl": medians["torch"] / medians[row] if "torch" in medians else None,
                "vs_original": medians["original"] / medians[row] if "original" in medians else None,
            })

    def fmt(x, spec="", suffix=""):
        return "" if x is None else format(x, spec) + suffix

    lines = [
        f"Machine: {env['machine']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"Whole processes, start to exit, device {device}: {rounds} interleaved round(s) after an untimed "
        "warm-up round; median (min-max). Phases: the run's own timings.json (medians); 'other' is the "
        "rest of the wall time (interpreter exit, what the run does not time). Speed-up = torch_impl's (or "
        "the original's) median / this row's. Compared: flax_impl as tuned (default variant) against eager "
        "torch_impl as a user runs it. Test acc: the run's final test accuracy (a range where rounds differ).",
        "",
        "| run | epochs | seconds, median (min-max) | " + " | ".join(PHASES)
        + " | other | vs torch_impl | vs original | test acc |",
        "|---|---:|---:|" + "---:|" * len(PHASES) + "---:|---:|---:|---:|",
    ]
    for s in summary:
        ph = s["phases"]
        cells = [fmt(ph[p], ".2f") if ph else "" for p in PHASES]
        other = fmt(s["median_seconds"] - sum(ph.values()), ".2f") if ph else ""
        lines.append(f"| {s['label']} | {s['epochs']} | {s['median_seconds']:.2f} ({s['min_seconds']:.2f}-"
                     f"{s['max_seconds']:.2f}) | " + " | ".join(cells) + f" | {other} | "
                     f"{fmt(s['vs_torch_impl'], '.2f', 'x')} | {fmt(s['vs_original'], '.2f', 'x')} | "
                     f"{accuracy_cell(s['test_accuracy'])} |")
    warm = {s["epochs"]: s for s in summary if s["row"] == "flax-warm"}
    cold = {s["epochs"]: s for s in summary if s["row"] == "flax-cold"}
    for e in sorted(set(warm) & set(cold)):
        if warm[e]["phases"] and cold[e]["phases"] and cold[e]["phases"]["compile"]:
            lines.append("")
            lines.append(f"Warm-cache compile at {e} epoch(s): {warm[e]['phases']['compile']:.2f} s, "
                         f"{100 * warm[e]['phases']['compile'] / cold[e]['phases']['compile']:.1f}% of the cold "
                         f"{cold[e]['phases']['compile']:.2f} s.")
    nnx = {s["epochs"]: s for s in summary if s["row"] == "nnx-warm"}
    for e in sorted(set(warm) & set(nnx)):
        lines += ["", f"--api nnx against Linen at {e} epoch(s), warm caches: {nnx[e]['median_seconds']:.2f} s against "
                      f"{warm[e]['median_seconds']:.2f} s, {nnx[e]['median_seconds'] / warm[e]['median_seconds']:.2f}x."]
    lines += epoch_share_lines(summary)
    table = "\n".join(lines) + "\n"
    data = {**env, "device": device, "rows": summary, "args": vars(args)}
    write_report(args.out, table, data, echo=not quiet)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.process", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--epochs", default=None,
                        help="comma-separated epoch counts (default: 1,3 on a CPU, 1,10 on an accelerator)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up (default: %(default)s)")
    parser.add_argument("--rows", default=",".join(ROWS), help="which rows (default: %(default)s)")
    parser.add_argument("--trainer-args", default="",
                        help="extra flags for the trainers' rows, e.g. '--train-size 640' for a quick trial")
    parser.add_argument("--out", default="runs/bench/process", help="output path without suffix (default: %(default)s)")
    args = parser.parse_args(argv)
    extra = tuple(args.trainer_args.split())

    accelerator = detect_accelerator(args.device)
    epochs_list = [int(e) for e in (args.epochs or ("1,10" if accelerator else "1,3")).split(",")]
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    device = "cuda" if accelerator else ("cpu" if args.device == "auto" else args.device)
    env = {"machine": machine(), "versions": versions()}  # versions() imports torch and jax: once, not per report
    print(f"machine: {env['machine']}; device {device}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="fashion-parity-process-bench-"))
    warm_cache = work / "warm-cache"
    results: dict[tuple[str, int], list[dict]] = {(r, e): [] for r in rows for e in epochs_list}
    try:
        # Warm-up round, untimed, at the shortest length (the programs compiled do not depend on the
        # epoch count): fills the warm compilation cache, the data cache and the OS's file cache.
        for row in rows:
            run_once(row, min(epochs_list), device, work, warm_cache, extra)
        for round_ in range(args.rounds):
            for epochs in epochs_list:
                order = rows[round_ % len(rows):] + rows[: round_ % len(rows)]  # rotate: no row always first
                for row in order:
                    r = run_once(row, epochs, device, work, warm_cache, extra)
                    results[(row, epochs)].append(r)
                    print(f"  round {round_ + 1}, {epochs} epoch(s), {ROWS[row]}: {r['seconds']:.2f} s", flush=True)
                    # Rewritten after every run: a benchmark stopped by a timeout keeps what it measured.
                    report(results, device, env, args, quiet=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, device, env, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
