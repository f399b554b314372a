"""`python -m benchmarks.determinism`: which part of flax_impl's training gives other bits on the same
inputs, at run time or at compilation (issue #31 part 6: on one H200, two `--deterministic` flax runs
differed by epoch 2 while torch's were byte-identical, and the flag did reach XLA).

Asked of the programs the trainer compiles (--variant, --api; XLA's --xla_gpu_deterministic_ops as
--deterministic sets it, unless --no-deterministic-flag), with the compilation cache off:
- run time: each program run REPEATS times in this process on the same inputs: the init, a scan of
  K train steps (the trainer's dispatch), the evaluation, and (Linen) the pieces of one step: the
  forward pass, the loss and every parameter's gradient, Adam's update. The first output that
  differs is named, with how far apart the runs are.
- compilation: PROCESSES fresh processes each compile the scan and run it once; their outputs are
  compared. Identical within a process but not across processes: the compiled programs differ (XLA's
  autotuner picks kernels by timing), which extra XLA flags (--xla-flags, e.g.
  --xla_gpu_autotune_level=0) may settle.
On a CPU every answer is "identical"; the tool is for a GPU (benchmarks/gpu_check.sh's deterministic
stage). Prints the table; with --out, writes OUT.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCAN = "a scan of {k} train steps"


def differences(runs: list[dict[str, np.ndarray]]) -> str:
    """'identical', or the first output (in order) whose bits differ between runs, and by how much."""
    first = runs[0]
    for name, a in first.items():
        for r, run in enumerate(runs[1:], 2):
            b = run[name]
            if a.tobytes() != b.tobytes():
                gap = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
                changed = int(np.sum(a != b))
                return f"DIFFERS: {name} (run 1 against run {r}: {changed} of {a.size} values, max |diff| {gap:.3g})"
    return f"identical ({len(runs)} runs, {len(first)} outputs)"


def outputs(tree) -> dict[str, np.ndarray]:
    """Every leaf of a pytree, by its path, as a host array."""
    import jax

    return {jax.tree_util.keystr(path, simple=True, separator="."): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def programs(variant: str, api: str, k: int, device: str, scan_only: bool = False):
    """name -> a function of no arguments that runs one program on fixed inputs and returns its outputs;
    scan_only: the scan alone (a compiling child process needs nothing else)."""
    import jax
    import jax.numpy as jnp

    from common.config import TrainConfig
    from data import epoch_order, load_fashion_mnist
    from flax_impl import steps, training
    from flax_impl.placement import make_placement
    from flax_impl.steps import EVAL_BATCH_SIZE
    from flax_impl.variants import resolve_variant

    placement = make_placement(device, 1)
    config = TrainConfig("flax", api=api, variant=resolve_variant(variant, placement.platform))
    dataset = load_fashion_mnist().subset(64 * k, EVAL_BATCH_SIZE)
    x, y = training.device_arrays(dataset.train_images, dataset.train_labels, placement)
    state = training.create_train_state(config, placement)
    idx = jnp.asarray(epoch_order(len(dataset.train_labels), 0, 1)[: 64 * k].reshape(k, 64).astype(np.int32))
    scan = training.compile_train_steps(state, x, y, (k, 64), placement)
    # the scan donates its state: each run gets a fresh copy of the same numbers
    run_scan = {SCAN.format(k=k): lambda: outputs(scan(jax.tree.map(jnp.copy, state), training.zero_totals(placement),
                                                        x, y, idx))}
    if scan_only:
        return run_scan, placement.describe()
    test_x, test_y = training.device_arrays(dataset.test_images, dataset.test_labels, placement, pad_to=EVAL_BATCH_SIZE)
    evaluate = training.compile_eval(state, test_x, test_y, placement)
    init = training.init_program(api, config.variant, config.kernel_size, config.init, config.lr,
                                 placement.local_device)
    runs = {"init": lambda: outputs(init(jax.random.key(0))), **run_scan,
            "evaluation": lambda: outputs(evaluate(state, test_x, test_y))}
    if api == "linen":  # the pieces of one step, to name the operation that differs
        batch = steps.gather(x, y, idx[0])

        def loss(params):
            loss_sum, _, valid = steps.masked_loss_sum(state.apply_fn({"params": params}, batch["images"]),
                                                       batch["labels"])
            return loss_sum / valid.sum()

        forward = jax.jit(lambda params: state.apply_fn({"params": params}, batch["images"]))
        gradients = jax.jit(jax.value_and_grad(loss))
        grads = gradients(state.params)[1]
        update = jax.jit(lambda s, g: s.apply_gradients(grads=g))
        runs.update({
            "one step: forward (logits)": lambda: outputs(forward(state.params)),
            "one step: loss and gradients": lambda: outputs(gradients(state.params)),
            "one step: Adam's update": lambda: outputs(update(state, grads).params),
        })
    return runs, placement.describe()


def child(args) -> int:
    """One fresh process: compile the scan and run it once; its outputs to args.child (.npz)."""
    runs, _ = programs(args.variant, args.api, args.k, args.device, scan_only=True)
    np.savez(args.child, **runs[SCAN.format(k=args.k)]())
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.determinism", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or gpu (default: %(default)s)")
    parser.add_argument("--variant", default="auto", help="flax model variant (default: the backend's)")
    parser.add_argument("--api", default="linen", choices=("linen", "nnx"))
    parser.add_argument("--k", type=int, default=8, help="train steps in the scan (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each program in one process (default: 5)")
    parser.add_argument("--processes", type=int, default=2, help="fresh processes compiling the scan (default: 2)")
    parser.add_argument("--no-deterministic-flag", action="store_true",
                        help="leave out --xla_gpu_deterministic_ops (what a run without --deterministic compiles)")
    parser.add_argument("--xla-flags", default="", help="more XLA flags, e.g. --xla-flags=--xla_gpu_autotune_level=0")
    parser.add_argument("--out", default=None, help="write OUT.md too")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {args.xla_flags}".strip()
    from flax_impl import compile_cache
    from flax_impl.train import set_numerics

    set_numerics("highest", deterministic=not args.no_deterministic_flag)  # as the trainer, before the backend
    compile_cache.enable("off")  # every process compiles for itself
    if args.child:
        return child(args)

    runs, device = programs(args.variant, args.api, args.k, args.device)
    rows = [(f"run time: {name}, {args.repeats} runs in one process", differences([fn() for _ in range(args.repeats)]))
            for name, fn in runs.items()]
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"process-{i}.npz" for i in range(args.processes)]
        # the children inherit XLA_FLAGS as set here (the deterministic flag and --xla-flags)
        command = [sys.executable, "-m", "benchmarks.determinism", "--device", args.device, "--variant", args.variant,
                   "--api", args.api, "--k", str(args.k)]
        command += ["--no-deterministic-flag"] if args.no_deterministic_flag else []
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for f in files:
            proc = subprocess.run([*command, "--child", str(f)], cwd=REPO, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"a compiling process failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        loaded = [dict(np.load(f)) for f in files]
    rows.append((f"compilation: {SCAN.format(k=args.k)}, compiled in {args.processes} fresh processes",
                 differences(loaded)))
    flags = os.environ.get("XLA_FLAGS", "") or "none"
    lines = [f"## Bit-reproducibility of flax_impl's programs ({device}; --api {args.api}, --variant {args.variant}; "
             f"XLA_FLAGS: {flags})", "", "| question | answer |", "|---|---|"]
    lines += [f"| {q} | {a} |" for q, a in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
