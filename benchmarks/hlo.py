"""`python -m benchmarks.hlo`: what the compiled train step lowers to, op by op.

Reads the optimized HLO of flax_impl's compiled step (jax's public `Compiled.as_text()`) and counts
its operations: convolutions with their feature/batch group counts (jax.vmap of a convolution over
per-seed kernels becomes a grouped convolution), library calls by target (cuDNN, cuBLAS), scatters
and select-and-scatters (what --xla_gpu_deterministic_ops makes serial), sorts and reductions.
For issue #31: why a vmapped step of 32 seeds costs ~20x one seed's, and which operations pay for
--deterministic. Prints a table; with --out, writes OUT.md too.

    python -m benchmarks.hlo --variant idiomatic --seeds 32
    XLA_FLAGS=--xla_gpu_deterministic_ops=true python -m benchmarks.hlo --variant idiomatic
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

# An HLO instruction: `%name = type opcode(operands), attributes`. The type may be a tuple.
INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(?:\([^=]*?\)|[\w\[\]{},:\s/*]+?)\s+([\w\-]+)\(")
TARGET = re.compile(r'custom_call_target="([^"]+)"')
GROUPS = re.compile(r"(feature_group_count|batch_group_count)=(\d+)")


def census(hlo_text: str) -> collections.Counter:
    """Counts of each operation kind in an HLO module's text; convolutions keyed with their groups,
    custom calls with their targets."""
    counts: collections.Counter = collections.Counter()
    for line in hlo_text.splitlines():
        m = INSTRUCTION.match(line)
        if not m:
            continue
        op = m.group(1)
        if op == "custom-call":
            target = TARGET.search(line)
            op = f"custom-call {target.group(1) if target else '?'}"
        groups = " ".join(f"{k}={v}" for k, v in GROUPS.findall(line) if v != "1")
        if groups and (op == "convolution" or "conv" in op.lower().removeprefix("custom-call")):
            op = f"{op} [{groups}]"
        counts[op] += 1
    return counts


INTERESTING = ("convolution", "custom-call", "dot", "scatter", "select-and-scatter", "sort", "reduce-window",
               "reduce", "while", "fusion", "gather", "all-reduce")


def table(counts: collections.Counter, title: str) -> str:
    lines = [f"## {title}", "", "| operation | count |", "|---|---:|"]
    for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if op.split(" ")[0] in INTERESTING:
            lines.append(f"| {op} | {n} |")
    return "\n".join(lines) + "\n"


def compiled_step_text(variant: str, api: str, seeds: int, k: int, device: str) -> tuple[str, str]:
    """The optimized HLO of the trainer's compiled step: one seed's (training.compile_train_steps),
    or `seeds` seeds vmapped as `--sweep vmap` trains them (sweep.TRAIN_STEPS_VMAPPED)."""
    import jax
    import jax.numpy as jnp

    from common.config import TrainConfig
    import numpy as np
    from flax_impl import sweep, training
    from flax_impl.placement import make_placement

    placement = make_placement(device, 1)
    rng = np.random.default_rng(0)  # the program depends on shapes only
    images = rng.integers(0, 256, (64 * 4, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 64 * 4).astype(np.int64)
    x, y = training.device_arrays(images, labels, placement)
    if seeds <= 1:
        config = TrainConfig("flax", variant=variant, api=api)
        state = training.create_train_state(config, placement)
        k = k or training.steps_per_dispatch(config, placement.platform)
        compiled = training.compile_train_steps(state, x, y, (k, 64), placement)
        return compiled.as_text(), placement.describe()
    config = TrainConfig("flax", variant=variant, api=api, seeds=list(range(seeds)))
    k = k or training.steps_per_dispatch(config, placement.platform)
    states = sweep.seed_states(config, placement)
    idx = jax.ShapeDtypeStruct((seeds, k, 64), jnp.int32)
    lowered = sweep.TRAIN_STEPS_VMAPPED[api].lower(sweep.stack(states), sweep.zero_totals(seeds, placement), x, y, idx)
    return training.compile_with_options(lowered, placement.platform).as_text(), placement.describe()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hlo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="auto", help="auto, idiomatic or custom-vjp (default: %(default)s)")
    parser.add_argument("--api", default="linen", choices=("linen", "nnx"))
    parser.add_argument("--seeds", type=int, default=1, help="1: the single-seed step; N: N seeds vmapped")
    parser.add_argument("--k", type=int, default=0, help="steps per dispatch (default: the backend's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or gpu (default: %(default)s)")
    parser.add_argument("--out", default=None, help="also write OUT.md (and OUT.hlo.txt, the whole module)")
    args = parser.parse_args(argv)
    text, where = compiled_step_text(args.variant, args.api, args.seeds, args.k, args.device)
    import os

    flags = os.environ.get("XLA_FLAGS", "")
    title = (f"{args.api} --variant {args.variant}, {args.seeds} seed(s){' vmapped' if args.seeds > 1 else ''}, "
             f"{where}{', XLA_FLAGS=' + flags if flags else ''}")
    report = table(census(text), title)
    print(report, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text(report)
        Path(f"{args.out}.hlo.txt").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
