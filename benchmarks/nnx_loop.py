"""`python -m benchmarks.nnx_loop`: why the trainer fuses the NNX step, one change at a time.

The reader's loop (one `nnx.jit(train_step)` call per batch, the batch indexed outside the step,
XLA's default options) differs from the trainer's fused steps in four ways. Each row below adds one
of them to the row above, so the ratio between neighbours is what that change is worth:
1. the reader's loop as written;
2. + the project's XLA options (flax_impl.training.COMPILER_OPTIONS, given as XLA_FLAGS);
3. + the batch gathered inside the step (the indices passed, not the batch);
4. + nnx.cached_partial (Flax's performance guide: model and optimizer traversed once, not per call);
5. the trainer's fused form (nnx.merge, the step, nnx.state inside one jax.jit), 1 step per dispatch;
6. the same, the trainer's steps per dispatch on this backend (a lax.scan: 16 on a CPU, 64 on a GPU).
Off the CPU two more rows answer "what is the smallest change that makes the reader's loop as fast
as torch": row 1 with nnx.cached_partial alone, and torch_impl's eager step, the bar to reach.
Rows run in fresh processes, in interleaved rotated rounds; medians over rounds. Writes OUT.md/.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from benchmarks.__main__ import BATCH, machine, run_row, versions, write_report
from flax_impl.training import COMPILER_OPTIONS, STEPS_PER_DISPATCH


def xla_flags(platform: str = "cpu") -> str:
    return " ".join(f"--{name}={value}" for name, value in (COMPILER_OPTIONS.get(platform) or {}).items())


def rows(platform: str = "cpu") -> list[tuple[str, str, list[str], dict, bool]]:
    """(label, row, flags, launcher, on the ladder): a ladder row is compared with the one above it;
    the rows after the ladder with row 1 only."""
    options = {"xla_flags": xla_flags(platform)} if COMPILER_OPTIONS.get(platform) else {}
    k = STEPS_PER_DISPATCH[platform]
    # Row 2 adds the backend's XLA options; a backend without any (the GPU) would time row 1 twice.
    second = [("2. + the project's XLA options", "nnx-jit", [], options)] if options else []
    extra = [] if platform == "cpu" else [
        ("7. row 1 + nnx.cached_partial alone", "nnx-jit", ["--cached"], {}),
        ("8. torch_impl's eager step (the bar for the reader's loop)", "torch", [], {})]
    ladder = [
        ("1. reader's loop: nnx.jit step per batch, batch indexed outside, XLA defaults", "nnx-jit", [], {}),
        *second,
        ("3. + the batch gathered inside the step", "nnx-jit", ["--gather", "inside"], options),
        ("4. + nnx.cached_partial", "nnx-jit", ["--gather", "inside", "--cached"], options),
        ("5. fused functional step (merge, step, state in one jax.jit), 1 per dispatch", "flax",
         ["--api", "nnx", "--k", "1"], {}),
        (f"6. fused, a lax.scan of {k} steps per dispatch (the trainer on this backend)", "flax",
         ["--api", "nnx", "--k", str(k)], {}),
    ]
    return [(*row, True) for row in ladder] + [(*row, False) for row in extra]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nnx_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                        help="the backend; its own XLA options and steps per dispatch (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=128, help="timed steps per round (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=32, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--out", default="runs/bench/nnx_loop",
                        help="output path without suffix (default: %(default)s)")
    args = parser.parse_args(argv)

    table_rows = rows(args.device)
    # torch's rows name no "gpu" device and JAX's no "cuda": on a GPU both sides take auto (the GPU).
    row_args = argparse.Namespace(**{**vars(args), "device": "cpu" if args.device == "cpu" else "auto"})
    runs: list[list[dict]] = [[] for _ in table_rows]
    for round_ in range(args.rounds):
        order = list(range(len(table_rows)))
        for i in order[round_ % len(order):] + order[: round_ % len(order)]:
            label, name, flags, launcher, _ = table_rows[i]
            result = run_row(name, flags, row_args, launcher)
            runs[i].append(result)
            status = result["error"] if "error" in result else f"{BATCH / result['seconds_per_step'][0]:.0f} samples/s"
            print(f"  round {round_ + 1}: {label}: {status}", flush=True)

    lines = [f"Machine: {machine()}; " + ", ".join(f"{k} {v}" for k, v in versions().items()),
             f"Batch {BATCH}, the default model variant; a fresh process per row and round, {args.warmup} warm-up "
             f"steps then {args.steps} timed; {args.rounds} interleaved rounds, median (min-max).", "",
             "| row | samples/s, median (min-max) | vs the row above | vs row 1 |", "|---|---:|---:|---:|"]
    medians = []
    for (label, _, _, _, on_ladder), row_runs in zip(table_rows, runs):
        rates = [BATCH / r["seconds_per_step"][0] for r in row_runs if "error" not in r]
        if not rates:
            medians.append(None)
            lines.append(f"| {label} | failed: {row_runs[-1]['error']} | | |")
            continue
        median = statistics.median(rates)
        above = medians[-1] if medians and on_ladder else None
        first = medians[0] if medians else None
        medians.append(median)
        ratio = f"{median / above:.2f}x" if above else ""
        total = f"{median / first:.2f}x" if first else ""
        lines.append(f"| {label} | {median:.0f} ({min(rates):.0f}-{max(rates):.0f}) | {ratio} | {total} |")
    write_report(args.out, "\n".join(lines) + "\n", {"machine": machine(), "versions": versions(),
                                                      "rows": [r[0] for r in table_rows], "runs": runs,
                                                      "args": vars(args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
