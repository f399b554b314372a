"""`python -m benchmarks.seeds`: what a seed sweep costs, per model-step and for the whole process.

Steps: flax_impl's train step for N seeds at once (jax.vmap over the stacked train states, as
`--sweep vmap` trains) against the same N seeds one after another (`--sweep sequential`), each a
scan of K steps per dispatch at batch 64 on the real data; ms per model-step (one seed, one step),
median over interleaved rounds. Processes (--process): `--seeds 0-(N-1)` as one process against N
`--seed S` processes run one after another, for each trainer, timed from start to exit. Ratios
are between rows of this run. Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.__main__ import machine, versions, write_report

REPO = Path(__file__).resolve().parents[1]


def step_rows(counts: list[int], k: int, rounds: int, reps: int, device: str,
              variant: str = "auto") -> tuple[list[dict], str]:
    """ms per model-step for each (seeds, mode), interleaved over rounds."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from common.config import TrainConfig
    from data import epoch_order, load_fashion_mnist
    from flax_impl import custom_vjp, sweep, training
    from flax_impl.placement import make_placement
    from flax_impl.variants import resolve_variant

    placement = make_placement(device, 1)
    # The custom-vjp model's vmapped convolutions are batched matmuls on some backends, JAX's grouped
    # convolutions on the others (custom_vjp.SEEDS_AS_MATMULS): both are timed, the other form as a row of its own.
    as_matmuls = custom_vjp.seeds_as_matmuls(placement.platform)
    forms = {"vmap": as_matmuls}
    if resolve_variant(variant, placement.platform) == "custom-vjp":
        forms["vmap, grouped convolutions" if as_matmuls else "vmap, convolutions as matmuls"] = not as_matmuls
    dataset = load_fashion_mnist().subset(64 * k * 4, 128)
    x, y = training.device_arrays(dataset.train_images, dataset.train_labels, placement)
    n = len(dataset.train_labels)
    runners = {}
    for count in counts:
        config = TrainConfig("flax", seeds=list(range(count)), variant=variant)
        states = sweep.seed_states(config, placement)
        idx = np.stack([epoch_order(n, s, 1)[: 64 * k].reshape(k, 64).astype(np.int32) for s in range(count)])
        for mode, matmuls in forms.items():
            stacked = {"state": sweep.stack(states), "totals": sweep.zero_totals(count, placement)}
            jax.clear_caches()  # the form is chosen when the step is traced: trace it again
            with custom_vjp.seeds_formulation(placement.platform, matmuls):
                lowered = sweep.TRAIN_STEPS_VMAPPED[config.api].lower(stacked["state"], stacked["totals"], x, y,
                                                                      jnp.asarray(idx))
            vmapped = training.compile_with_options(lowered, placement.platform)

            def run_vmap(stacked=stacked, vmapped=vmapped, idx=jnp.asarray(idx)):
                for _ in range(reps):
                    stacked["state"], stacked["totals"] = vmapped(stacked["state"], stacked["totals"], x, y, idx)
                jax.block_until_ready(stacked["totals"])

            runners[(count, mode)] = run_vmap
        one = training.compile_train_steps(states[0], x, y, (k, 64), placement)
        alone = {"states": states}

        def run_sequential(alone=alone, one=one, idx=idx):
            for _ in range(reps):
                out = []
                for i, s in enumerate(alone["states"]):
                    s, _ = one(s, training.zero_totals(placement), x, y, jnp.asarray(idx[i]))
                    out.append(s)
                alone["states"] = out
            jax.block_until_ready(alone["states"])

        runners[(count, "sequential")] = run_sequential
    for run in runners.values():  # warm-up: first dispatches, allocations
        run()
    times = {key: [] for key in runners}
    keys = list(runners)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            start = time.perf_counter()
            runners[key]()
            times[key].append((time.perf_counter() - start) / (reps * k * key[0]) * 1e3)
    rows = [{"seeds": c, "mode": m, "ms_per_model_step": statistics.median(t), "min": min(t), "max": max(t)}
            for (c, m), t in times.items()]
    return rows, placement.describe()


def step_table(rows: list[dict], k: int, device: str) -> str:
    fewest = min(x["seeds"] for x in rows)
    # The baseline: the fewest seeds one after another (at 1 seed: a single-seed run's own step).
    one = next(r for r in rows if r["seeds"] == fewest and r["mode"] == "sequential")["ms_per_model_step"] * fewest
    lines = [f"## flax_impl train step for N seeds ({device}; scan of {k} steps, batch 64)", "",
             f"| seeds | mode | ms per model-step (median, min-max) | a step of all seeds vs {fewest} seed(s) "
             "alone | sequential / this row |", "|---:|---|---:|---:|---:|"]
    by = {(r["seeds"], r["mode"]): r for r in rows}
    for r in rows:
        per_step = r["ms_per_model_step"] * r["seeds"] / one
        ratio = by[(r["seeds"], "sequential")]["ms_per_model_step"] / r["ms_per_model_step"]
        lines.append(f"| {r['seeds']} | {r['mode']} | {r['ms_per_model_step']:.3f} ({r['min']:.3f}-{r['max']:.3f}) "
                     f"| {per_step:.2f}x | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def conv_formulations(counts: list[int], rounds: int, reps: int) -> str:
    """conv2 (32 -> 64 channels, 3x3, 'VALID', on the 13x13 maps of a batch of 64), forward and both
    gradients, for S seeds under jax.vmap, written two ways: XLA's convolution (vmapped over per-seed
    kernels it becomes one grouped convolution, feature_group_count=S) and im2col patches times the
    kernel as a matmul (vmapped: a batched matmul). ms per seed, median over rounds. Shows whether the
    vmapped step's cost is the grouped convolution's."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def xla_conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def im2col_conv(x, w):
        k = w.shape[0]
        n, h, wd, c = x.shape
        ho, wo = h - k + 1, wd - k + 1
        patches = jnp.stack([x[:, i:i + ho, j:j + wo, :] for i in range(k) for j in range(k)], axis=3)
        return patches.reshape(n, ho, wo, k * k * c) @ w.reshape(k * k * c, -1)

    def loss(conv):
        return lambda w, x: jnp.sum(jnp.tanh(conv(x, w)))

    forms = {"XLA convolution (grouped under vmap)": xla_conv, "im2col matmul (batched under vmap)": im2col_conv}
    key = jax.random.PRNGKey(0)
    lines = ["## conv2 forward + gradients, S seeds under jax.vmap (ms per seed)", "",
             "| seeds | " + " | ".join(forms) + " |", "|---:|" + "---:|" * len(forms)]
    for count in counts:
        kx, kw = jax.random.split(jax.random.fold_in(key, count))
        x = jax.random.normal(kx, (count, 64, 13, 13, 32))
        w = jax.random.normal(kw, (count, 3, 3, 32, 64)) * 0.05
        cells = []
        for conv in forms.values():
            step = jax.jit(jax.vmap(jax.grad(loss(conv), argnums=(0, 1))))
            jax.block_until_ready(step(w, x))
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(reps):
                    out = step(w, x)
                jax.block_until_ready(out)
                times.append((time.perf_counter() - start) / (reps * count) * 1e3)
            cells.append(f"{statistics.median(times):.4f}")
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def process_rows(frameworks: list[str], count: int, epochs: int, rounds: int, extra: list[str]) -> list[dict]:
    """Whole-process seconds: one --seeds sweep against `count` single-seed processes, interleaved."""
    work = Path(tempfile.mkdtemp(prefix="seeds-bench-"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def timed(cmd: list[str]) -> float:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        return time.perf_counter() - start

    def base(fw, out):
        return [sys.executable, "-m", f"{fw}_impl.train", "--epochs", str(epochs), "--quiet", "--overwrite",
                "--out-dir", str(work / out), *extra]

    cases = {}
    for fw in frameworks:
        cases[(fw, "one --seeds process")] = lambda fw=fw: timed(base(fw, f"{fw}-sweep") + ["--seeds", f"0-{count - 1}"])
        cases[(fw, f"{count} --seed processes")] = lambda fw=fw: sum(
            timed(base(fw, f"{fw}-{s}") + ["--seed", str(s)]) for s in range(count))
    times = {key: [] for key in cases}
    keys = list(cases)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            times[key].append(cases[key]())
    return [{"framework": fw, "how": how, "seconds": statistics.median(t), "min": min(t), "max": max(t)}
            for (fw, how), t in times.items()]


def process_table(rows: list[dict], count: int, epochs: int) -> str:
    lines = [f"## {count} seeds of {epochs} epoch(s), whole processes (start to exit)", "",
             "| trainer | how | seconds (median, min-max) | separate processes / sweep |", "|---|---|---:|---:|"]
    for r in rows:
        sweep = next(x for x in rows if x["framework"] == r["framework"] and x["how"].startswith("one"))
        lines.append(f"| {r['framework']}_impl | {r['how']} | {r['seconds']:.1f} ({r['min']:.1f}-{r['max']:.1f}) | "
                     f"{r['seconds'] / sweep['seconds']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or gpu (default: %(default)s)")
    parser.add_argument("--counts", default=None,
                        help="seed counts for the step table (default: 1,4 on a CPU, 1,8,32,128 elsewhere)")
    parser.add_argument("--k", type=int, default=0, help="steps per dispatch (default: flax_impl's per backend)")
    parser.add_argument("--reps", type=int, default=0, help="dispatches per timing (default: 2 on a CPU, 8 elsewhere)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--process", action="store_true", help="add the whole-process table")
    parser.add_argument("--process-seeds", type=int, default=4, help="seeds in the process table (default: 4)")
    parser.add_argument("--process-epochs", type=int, default=1, help="epochs in the process table (default: 1)")
    parser.add_argument("--process-frameworks", default="flax,torch", help="default: %(default)s")
    parser.add_argument("--process-args", default="", help="extra trainer flags, e.g. '--train-size 6000'")
    parser.add_argument("--variant", default="auto", help="flax model variant (default: %(default)s, the backend's)")
    parser.add_argument("--formulations", action="store_true",
                        help="add the vmapped conv2 table: XLA's grouped convolution against an im2col matmul")
    parser.add_argument("--out", default="runs/bench/seeds", help="output path without suffix (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from flax_impl.train import STEPS_PER_DISPATCH

    platform = jax.devices()[0].platform if args.device == "auto" else args.device
    cpu = platform == "cpu"
    counts = [int(c) for c in (args.counts or ("1,4" if cpu else "1,8,32,128")).split(",")]
    k = args.k or STEPS_PER_DISPATCH.get(platform, 16)
    reps = args.reps or (2 if cpu else 8)
    rows, device = step_rows(counts, k, args.rounds, reps, args.device, args.variant)
    table = (f"# Seed sweeps\n\nMachine: {machine()}; {versions()}; --variant {args.variant}\n\n"
             + step_table(rows, k, device))
    payload = {"steps": rows, "k": k, "device": device, "variant": args.variant}
    if args.formulations:
        table += "\n" + conv_formulations(counts, args.rounds, reps)
    if args.process:
        prows = process_rows(args.process_frameworks.split(","), args.process_seeds, args.process_epochs,
                             args.rounds, args.process_args.split())
        table += "\n" + process_table(prows, args.process_seeds, args.process_epochs)
        payload["processes"] = prows
    write_report(args.out, table, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
