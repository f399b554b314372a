"""Side-by-side report of two run folders: `python -m common.compare RUN_A RUN_B --out runs/comparison`.

Writes OUT.md (per-epoch table and a summary) and OUT.png (both learning curves overlaid).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.plots import plot_curves
from common.run_files import read_run


def _label(run: dict, other: dict) -> str:
    """The framework name, or the folder name where both runs share a framework."""
    a, b = run["config"].get("framework", "?"), other["config"].get("framework", "?")
    return a if a != b else Path(run["dir"]).name


def _fmt_seconds(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# What must be equal for two runs' numbers, and their speed, to be comparable.
COMPARABLE = ("epochs", "batch_size", "kernel_size", "lr", "train_size", "test_size")


def differences(a: dict, b: dict) -> list[str]:
    """The settings in which two runs differ, as 'name A vs B'."""
    ca, cb = a["config"], b["config"]
    return [f"{k} {ca.get(k)} vs {cb.get(k)}" for k in COMPARABLE if ca.get(k) != cb.get(k)]


def comparison_markdown(a: dict, b: dict, differ: list[str] | None = None) -> str:
    la, lb = _label(a, b), _label(b, a)
    lines = [f"# {la} vs {lb}", "", f"Runs: `{a['dir']}` and `{b['dir']}`.", ""]
    sa, sb = a["summary"], b["summary"]
    ca, cb = a["config"], b["config"]
    rows = [
        ("test accuracy", f"{100 * sa['test_accuracy']:.2f}%", f"{100 * sb['test_accuracy']:.2f}%"),
        ("test correct", f"{sa['test_correct']}", f"{sb['test_correct']}"),
        ("test loss", f"{sa['test_loss']:.4f}", f"{sb['test_loss']:.4f}"),
        ("seconds per epoch (mean)", f"{sa['mean_epoch_seconds']:.2f}", f"{sb['mean_epoch_seconds']:.2f}"),
        ("compile seconds", _fmt_seconds(sa.get("compile_seconds")), _fmt_seconds(sb.get("compile_seconds"))),
        ("total seconds", f"{sa['total_seconds']:.1f}", f"{sb['total_seconds']:.1f}"),
        ("parameters", f"{sa['parameters']:,}", f"{sb['parameters']:,}"),
        ("device", sa["device"], sb["device"]),
        ("versions", ", ".join(f"{k} {v}" for k, v in ca.get("versions", {}).items()),
         ", ".join(f"{k} {v}" for k, v in cb.get("versions", {}).items())),
        ("epochs, batch, lr, kernel, seed",
         *(f"{c['epochs']}, {c['batch_size']}, {c['lr']}, {c['kernel_size']}, {c['seed']}" for c in (ca, cb))),
    ]
    lines += [f"| | {la} | {lb} |", "|---|---|---|"] + [f"| {name} | {x} | {y} |" for name, x, y in rows]
    differ = differences(a, b) if differ is None else differ
    if differ:
        lines += ["", f"**Not comparable run for run: the runs differ in {', '.join(differ)}.** No speed ratio is "
                      "given; accuracies and curves are shown as they are.", ""]
    else:
        speed = sa["mean_epoch_seconds"] / sb["mean_epoch_seconds"]
        lines += ["", f"{lb} trains {speed:.2f}x as fast as {la} per epoch (mean epoch seconds, compile excluded).",
                  ""]
    ta, tb = a["timings"].get("epoch_seconds", []), b["timings"].get("epoch_seconds", [])
    lines += [
        "## Per epoch",
        "",
        f"| epoch | train loss {la} | train loss {lb} | train acc {la} | train acc {lb} "
        f"| test acc {la} | test acc {lb} | s {la} | s {lb} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(max(len(a["metrics"]), len(b["metrics"]))):
        ma = a["metrics"][i] if i < len(a["metrics"]) else None
        mb = b["metrics"][i] if i < len(b["metrics"]) else None

        def cell(m, key, pct=False):
            if m is None:
                return ""
            return f"{100 * m[key]:.2f}%" if pct else f"{m[key]:.4f}"

        def secs(t):
            return f"{t[i]:.1f}" if i < len(t) else ""

        lines.append(
            f"| {i + 1} | {cell(ma, 'train_loss')} | {cell(mb, 'train_loss')} | {cell(ma, 'train_accuracy', True)} "
            f"| {cell(mb, 'train_accuracy', True)} | {cell(ma, 'test_accuracy', True)} "
            f"| {cell(mb, 'test_accuracy', True)} | {secs(ta)} | {secs(tb)} |"
        )
    return "\n".join(lines) + "\n"


def compare(run_a: str | Path, run_b: str | Path, out: str | Path) -> tuple[Path, Path]:
    a, b = read_run(run_a), read_run(run_b)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md, png = out.with_suffix(".md"), out.with_suffix(".png")
    differ = differences(a, b)
    if differ:
        print(f"warning: the runs differ in {', '.join(differ)}: compared as they are, without a speed ratio",
              file=sys.stderr)
    md.write_text(comparison_markdown(a, b, differ))
    plot_curves({_label(a, b): a["metrics"], _label(b, a): b["metrics"]}, png,
                title=f"{_label(a, b)} vs {_label(b, a)}")
    return md, png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", help="a finished run folder (e.g. runs/torch)")
    parser.add_argument("run_b", help="another finished run folder (e.g. runs/flax)")
    parser.add_argument("--out", default="runs/comparison", help="output path without suffix (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        md, png = compare(args.run_a, args.run_b, args.out)
    except (FileNotFoundError, KeyError, ValueError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    print(f"wrote {md} and {png}")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
