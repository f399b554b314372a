"""`make bench` / `python -m benchmarks`: training throughput of every implementation, in one run.

Each row runs in its own subprocess (clean peak memory): `--steps` timed steps after `--warmup`
untimed ones. Rows run in `--rounds` interleaved rounds (every row once per round, in a rotated
order), so a machine whose speed drifts slows every row alike; the median over rounds is quoted
with its spread (min-max), and ratios are computed between rows of this same run. The model's
training FLOPs are counted analytically (common.arch.train_flops) and compared with the machine's
float32 matmul ceiling, measured here in both frameworks. Writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from common.arch import forward_flops, train_flops
from data.atomic import atomic_write
from common.run_files import write_json_atomic

EPOCH = 60_000
BATCH = 64


def rows_for(accelerator: bool, with_compile: bool, devices: int) -> list[tuple[str, str, list[str], dict]]:
    """(label, row name, extra flags, launcher) in table order; launcher: {"torchrun": N},
    {"xla_host_devices": N} or {"xla_flags": "--flag=value ..."}."""
    rows = [("original example (torchvision + DataLoader + 2nd forward)", "torch-original", [], {})]
    if accelerator:  # one row per distinct code path: on CUDA, NCHW is the eager row's own format
        rows += [("torch_impl eager (--cuda-graph off)", "torch", [], {}),
                 ("torch_impl + torch.compile", "torch-compile", [], {}),
                 ("torch_impl + torch.compile(mode=\"reduce-overhead\") (CUDA graphs of the compiled step)",
                  "torch-compile-cudagraphs", [], {}),
                 ("torch_impl, whole step in one CUDA graph, capturable Adam (--cuda-graph on)", "torch-graph",
                  [], {})]
    else:
        rows += [("torch_impl", "torch", [], {}),
                 ("torch_impl in NCHW (its default before channels_last on CPU)", "torch-nchw", [], {})]
        if with_compile:
            rows.append(("torch_impl + torch.compile", "torch-compile", [], {}))
    # Both model variants with the same compiler options and the same dispatch, in the same run:
    # the faster one on each backend is flax_impl's default there (flax_impl/variants.py).
    k = "64" if accelerator else "1"
    per = "scan of 64 steps" if accelerator else "1 step"
    rows += [
        (f"flax_impl --variant idiomatic (nn.Conv, nn.max_pool), {per} per dispatch", "flax",
         ["--variant", "idiomatic", "--k", k], {}),
        (f"flax_impl --variant custom-vjp (custom-VJP ops), {per} per dispatch", "flax",
         ["--variant", "custom-vjp", "--k", k], {}),
    ]
    fused = "128" if accelerator else "16"
    rows.append((f"flax_impl (default variant), scan of {fused} steps per dispatch", "flax", ["--k", fused], {}))
    # The NNX twin (--api nnx) with the same compiler options and dispatch as each Linen row above,
    # and its step as a reader writes it (nnx.jit, one call per batch), which the trainer does not run.
    nnx = ["--api", "nnx"]
    rows += [
        (f"flax_impl --api nnx --variant idiomatic (nnx.Conv, nnx.max_pool), {per} per dispatch", "flax",
         [*nnx, "--variant", "idiomatic", "--k", k], {}),
        (f"flax_impl --api nnx --variant custom-vjp (custom-VJP ops), {per} per dispatch", "flax",
         [*nnx, "--variant", "custom-vjp", "--k", k], {}),
        (f"flax_impl --api nnx (default variant), scan of {fused} steps per dispatch", "flax",
         [*nnx, "--k", fused], {}),
        ("flax_impl --api nnx (default variant), the reader's loop: nnx.jit train_step, one call per batch",
         "nnx-jit", [], {}),
    ]
    if devices > 1:  # 1 vs N devices: GPUs where there are several, else host devices / processes on the CPU
        k = ["--k", "64"] if accelerator else ["--k", "1"]
        rows.append((f"torch_impl DDP, {devices} processes", "torch", [], {"torchrun": devices}))
        rows.append((f"flax_impl data-parallel, {devices} devices", "flax", [*k, "--devices", str(devices)],
                     {} if accelerator else {"xla_host_devices": devices}))
    return rows


def run_row(name: str, flags: list[str], args, launcher: dict | None = None) -> dict:
    launcher = launcher or {}
    env = dict(os.environ)
    prefix = [sys.executable, "-m"]
    if "torchrun" in launcher:
        prefix = [str(Path(sys.executable).parent / "torchrun"), "--standalone",
                  f"--nproc_per_node={launcher['torchrun']}", "-m"]
    if "xla_host_devices" in launcher:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={launcher['xla_host_devices']}"
    if "xla_flags" in launcher:  # XLA options for every compile of the row (nnx.jit takes no compiler options)
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), launcher["xla_flags"]]))
    cmd = [*prefix, "benchmarks.rows", name, "--device", args.device, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--repeats", "1", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"row": name, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads([line for line in proc.stdout.strip().splitlines() if line.startswith("{")][-1])


def detect_accelerator(device: str) -> bool:
    if device == "cpu":
        return False
    code = "import torch; print(torch.cuda.is_available())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    return out == "True"


def gpu_count() -> int:
    code = "import torch; print(torch.cuda.device_count())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() or 0)


def versions() -> dict:
    code = ("import json, torch, jax, flax, optax, numpy; print(json.dumps({'torch': torch.__version__, "
            "'jax': jax.__version__, 'flax': flax.__version__, 'optax': optax.__version__, "
            "'numpy': numpy.__version__, 'jax_backend': jax.default_backend()}))")
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=128, help="timed steps per repeat (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=32, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--rounds", "--repeats", type=int, default=3, dest="rounds",
                        help="interleaved rounds, one timing of every row each; medians quoted (default: %(default)s)")
    parser.add_argument("--with-compile", action="store_true", help="add torch.compile rows on CPU too")
    parser.add_argument("--devices", type=int, default=0,
                        help="data-parallel rows over N devices (default: the GPUs present, else 2 on CPU; 1: none)")
    parser.add_argument("--out", default="runs/bench/bench", help="output path without suffix (default: %(default)s)")
    args = parser.parse_args(argv)

    accelerator = detect_accelerator(args.device)
    devices = args.devices or (gpu_count() if accelerator else 2)
    flops_step = train_flops(3) * BATCH
    print(f"machine: {machine()}", flush=True)
    print(f"training FLOPs at k = 3: forward {forward_flops(3) / 1e6:.2f} MFLOP/sample, forward+backward "
          f"{train_flops(3) / 1e6:.2f} MFLOP/sample ({flops_step / 1e9:.3f} GFLOP per batch of {BATCH})", flush=True)
    ceilings = {fw: run_row(f"ceiling-{fw}", [], args) for fw in ("torch", "flax")}
    ceiling = max(c.get("gflops", 0.0) for c in ceilings.values())
    print("float32 matmul ceiling: " + ", ".join(f"{fw} {c.get('gflops', float('nan')):.0f} GFLOP/s"
                                                 for fw, c in ceilings.items()), flush=True)
    rows = rows_for(accelerator, args.with_compile, devices)
    runs: list[list[dict]] = [[] for _ in rows]
    for round_ in range(args.rounds):
        shift = round_ % len(rows)
        for i in list(range(len(rows)))[shift:] + list(range(len(rows)))[:shift]:  # rotated: no row always first
            label, name, flags, launcher = rows[i]
            r = run_row(name, flags, args, launcher)
            runs[i].append(r)
            status = "failed: " + r["error"] if "error" in r else f"{BATCH / r['seconds_per_step'][0]:.0f} samples/s"
            print(f"  round {round_ + 1}: {label}: {status}", flush=True)
    results = []
    for (label, name, flags, launcher), row_runs in zip(rows, runs):
        good = [r for r in row_runs if "error" not in r]
        if not good:
            results.append({**row_runs[-1], "label": label})
            continue
        r = dict(good[0])
        r["label"] = label
        r["seconds_per_step"] = [x["seconds_per_step"][0] for x in good]
        r["first_step_seconds"] = statistics.median(x["first_step_seconds"] for x in good)
        r["peak_rss_mib"] = max(x["peak_rss_mib"] for x in good)
        r["median_seconds_per_step"] = statistics.median(r["seconds_per_step"])
        r["samples_per_second"] = BATCH / r["median_seconds_per_step"]
        r["samples_per_second_min"] = BATCH / max(r["seconds_per_step"])
        r["samples_per_second_max"] = BATCH / min(r["seconds_per_step"])
        r["epoch_seconds"] = EPOCH / r["samples_per_second"]
        r["gflops"] = flops_step / r["median_seconds_per_step"] / 1e9
        r["fraction_of_ceiling"] = r["gflops"] / ceiling if ceiling else None
        results.append(r)

    def find(label_prefix):
        return next((r for r in results if r["label"].startswith(label_prefix) and "error" not in r), None)

    torch_row, original_row = find("torch_impl"), find("original example")
    variants = {v: find(f"flax_impl --variant {v}") for v in ("idiomatic", "custom-vjp")}
    variant_line = ""
    if all(variants.values()):
        fast = max(variants, key=lambda v: variants[v]["samples_per_second"])
        ratio = variants["custom-vjp"]["samples_per_second"] / variants["idiomatic"]["samples_per_second"]
        variant_line = (f"Model variants, same compiler options and dispatch: custom-vjp runs at {ratio:.2f}x the "
                        f"idiomatic model here; the faster is {fast}.")
        print(variant_line, flush=True)
    nnx_pairs = [(f"--variant {v}", find(f"flax_impl --api nnx --variant {v}"), variants[v])
                 for v in ("idiomatic", "custom-vjp")]
    nnx_pairs.append(("default variant", find("flax_impl --api nnx (default variant), scan"),
                      find("flax_impl (default variant)")))
    nnx_pairs.append(("default variant, nnx.jit per batch against the fused steps",
                      find("flax_impl --api nnx (default variant), the reader's loop"),
                      find("flax_impl --api nnx (default variant), scan")))
    nnx_ratios = [f"{what} {a['samples_per_second'] / b['samples_per_second']:.2f}x" for what, a, b in nnx_pairs
                  if a and b]
    if nnx_ratios:
        nnx_line = "NNX against Linen, the same dispatch (samples/s): " + "; ".join(nnx_ratios) + "."
        print(nnx_line, flush=True)
        variant_line = f"{variant_line} {nnx_line}".strip()
    torch_impl_rows = [r for r in results if r["label"].startswith("torch_impl") and "error" not in r]
    flax_default = find("flax_impl (default variant)")
    if torch_impl_rows and flax_default:  # the fair comparison: against PyTorch at its best here
        best = max(torch_impl_rows, key=lambda r: r["samples_per_second"])
        best_line = (f"flax_impl (default) runs at {flax_default['samples_per_second'] / best['samples_per_second']:.2f}x "
                     f"the fastest torch_impl row ({best['label']}).")
        print(best_line, flush=True)
        variant_line = f"{variant_line} {best_line}".strip()
    for r in results:
        if "error" in r:
            continue
        r["vs_torch_impl"] = r["samples_per_second"] / torch_row["samples_per_second"] if torch_row else None
        r["vs_original"] = r["samples_per_second"] / original_row["samples_per_second"] if original_row else None

    def fmt(x, spec):
        return "n/a" if x is None else format(x, spec)

    lines = [
        f"Machine: {machine()}; " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"Steps at batch {BATCH}: per row and round a fresh process, {args.warmup} warm-up steps, then {args.steps} "
        f"timed; {args.rounds} interleaved rounds, median (min-max over rounds); "
        f"s/epoch = 60,000 / (samples/s). Training FLOPs {train_flops(3) / 1e6:.2f} MFLOP/sample; float32 matmul "
        f"ceiling {ceiling:.0f} GFLOP/s (best of torch and JAX).",
        "",
        "Compared: flax_impl as tuned (its default variant, and both variants) against eager torch_impl, plus the "
        "tuned torch rows (on a CPU channels-first; on CUDA torch.compile, its reduce-overhead mode, and the whole step "
        "in one CUDA graph).",
        "",
        "| implementation | device | samples/s, median (min-max) | s/epoch | first step (compile) s "
        "| peak MiB (RSS / device) | GFLOP/s | % of ceiling | vs torch_impl | vs original |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if variant_line:
        lines[2:2] = [variant_line]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | | failed: {r['error']} | | | | | | | |")
            continue
        mem = f"{r['peak_rss_mib']:.0f}" + (f" / {r['peak_device_mib']:.0f}" if r.get("peak_device_mib") else "")
        lines.append(
            f"| {r['label']} | {r.get('device', '')} | {r['samples_per_second']:.0f} ({r['samples_per_second_min']:.0f}-"
            f"{r['samples_per_second_max']:.0f}) | {r['epoch_seconds']:.1f} | {r['first_step_seconds']:.2f} "
            f"| {mem} | {r['gflops']:.1f} | {fmt(100 * r['fraction_of_ceiling'] if r['fraction_of_ceiling'] else None, '.0f')}% "
            f"| {fmt(r['vs_torch_impl'], '.2f')}x | {fmt(r['vs_original'], '.2f')}x |"
        )
    table = "\n".join(lines) + "\n"
    write_report(args.out, table, {"machine": machine(), "versions": versions(), "ceilings": ceilings,
                                   "ceiling_gflops": ceiling, "flops_per_step": flops_step, "rows": results,
                                   "args": vars(args)})
    return 0


def write_report(out: str, table: str, payload: dict, echo: bool = True) -> None:
    """OUT.md (the table) and OUT.json (everything measured), each written whole or not at all (a
    benchmark may rewrite them until a timeout stops it), and, if echo, the table on the console."""
    out = Path(out)
    atomic_write(out.with_suffix(".md"), table.encode())
    write_json_atomic(out.with_suffix(".json"), payload)
    if not echo:
        return
    print()
    print(table)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    sys.exit(main())
