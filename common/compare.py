"""Side-by-side report of two run folders: `python -m common.compare RUN_A RUN_B --out runs/comparison`.

Writes OUT.md (per-epoch table and a summary) and OUT.png (both learning curves overlaid). Given
two seed sweeps (folders with seeds.json, from --seeds), it compares distributions instead: per
framework the mean +- std over seeds of each metric per epoch, the difference of the means with
Welch's 95% confidence interval, and learning curves with a band for each framework.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from common.plots import plot_bands, plot_curves
from common.run_files import SEEDS_FILE, read_run, seed_dir
from common.stats import welch
from common.summary import summarize


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


SWEEP_METRICS = (("test_accuracy", "test accuracy", 100, "points"), ("test_loss", "test loss", 1, ""),
                 ("train_loss", "train loss", 1, ""), ("train_accuracy", "train accuracy", 100, "points"))


def is_sweep(folder: str | Path) -> bool:
    """A sweep's folder holds common.sweep's aggregate."""
    return (Path(folder) / SEEDS_FILE).is_file()


def read_sweep(folder: str | Path) -> dict:
    """A finished sweep: its seeds.json and every seed's run folder, read as read_run reads one."""
    folder = Path(folder)
    record = json.loads((folder / SEEDS_FILE).read_text())
    if not record.get("complete"):
        raise ValueError(f"{folder} is an unfinished sweep (seeds.json says complete: false); resume it first")
    runs = [read_run(seed_dir(folder, s)) for s in record["seeds"]]
    return {"dir": str(folder), "record": record, "runs": runs, "config": runs[0]["config"]}


def _mean_std(s: dict, scale: float) -> str:
    """'91.20% +- 0.15' for an accuracy (scale 100), '0.2344 +- 0.0040' for a loss."""
    if scale == 100:
        return f"{100 * s['mean']:.2f}% +- {100 * s['std']:.2f}"
    return f"{s['mean']:.4f} +- {s['std']:.4f}"


def _interval(w: dict, scale: float, unit: str) -> str:
    digits = 2 if scale == 100 else 4
    unit = f" {unit}" if unit else ""
    return (f"{scale * w['diff']:+.{digits}f}{unit} [{scale * w['low']:+.{digits}f}, {scale * w['high']:+.{digits}f}]"
            + (" *" if w["low"] > 0 or w["high"] < 0 else ""))


def sweep_differences(a: dict, b: dict) -> list[str]:
    """The settings in which two sweeps differ (per seed run), and a different number of epochs done."""
    differ = differences(a["runs"][0], b["runs"][0])
    ea, eb = len(a["runs"][0]["metrics"]), len(b["runs"][0]["metrics"])
    return differ + ([f"epochs done {ea} vs {eb}"] if ea != eb and not any(d.startswith("epochs ") for d in differ)
                     else [])


def sweep_markdown(a: dict, b: dict, differ: list[str]) -> str:
    """The two sweeps' distributions, epoch by epoch, and whether their means differ (Welch, 95%)."""
    la, lb = _label(a, b), _label(b, a)
    ra, rb = a["record"], b["record"]
    seeds_a, seeds_b = len(a["runs"]), len(b["runs"])
    epochs = min(len(r["metrics"]) for r in a["runs"] + b["runs"])

    def values(sweep, e, key):
        return [r["metrics"][e - 1][key] for r in sweep["runs"]]

    lines = [f"# {la} vs {lb}: {seeds_a} and {seeds_b} seeds", "",
             f"Sweeps: `{a['dir']}` (seeds {ra['seeds']}, {ra.get('mode', '?')}) and `{b['dir']}` "
             f"(seeds {rb['seeds']}, {rb.get('mode', '?')}); devices {a['runs'][0]['summary']['device']} and "
             f"{b['runs'][0]['summary']['device']}.", ""]
    if differ:
        lines += [f"**Not the same recipe: the sweeps differ in {', '.join(differ)}.** Shown as they are.", ""]
    lines += [f"## After epoch {epochs}", "",
              f"Mean +- std over seeds (std with n - 1); the difference is {lb} minus {la}, with Welch's 95% "
              "confidence interval (unequal variances); * marks an interval that excludes 0.", "",
              f"| | {la} | {lb} | {lb} - {la} [95% CI] |", "|---|---:|---:|---:|"]
    verdicts = []
    for key, name, scale, unit in SWEEP_METRICS:
        sa, sb = summarize(values(a, epochs, key)), summarize(values(b, epochs, key))
        cells = [_mean_std(s, scale) for s in (sa, sb)]
        if seeds_a > 1 and seeds_b > 1:
            w = welch(values(a, epochs, key), values(b, epochs, key))
            cells.append(_interval(w, scale, unit))
            if w["low"] > 0 or w["high"] < 0:
                verdicts.append(name)
        else:
            cells.append("n/a (one seed)")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} |")
    lines.append("")
    if seeds_a > 1 and seeds_b > 1:
        lines.append(f"At 95%, the means differ in: {', '.join(verdicts)}." if verdicts else
                     "At 95%, no metric's means differ: every interval contains 0.")
        lines.append("")
    lines += ["## Per epoch", "",
              f"| epoch | test acc {la} | test acc {lb} | diff [95% CI] | train loss {la} | train loss {lb} "
              "| diff [95% CI] |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for e in range(1, epochs + 1):
        row = [str(e)]
        for key, _, scale, unit in (SWEEP_METRICS[0], SWEEP_METRICS[2]):
            sa, sb = summarize(values(a, e, key)), summarize(values(b, e, key))
            row += [_mean_std(s, scale) for s in (sa, sb)]
            row.append(_interval(welch(values(a, e, key), values(b, e, key)), scale, unit)
                       if seeds_a > 1 and seeds_b > 1 else "")
        lines.append("| " + " | ".join(row) + " |")
    if ra.get("epoch_seconds") and rb.get("epoch_seconds"):
        lines += ["", "Sweep seconds per epoch (all seeds together, median over epochs): " + ", ".join(
            f"{lab} {statistics.median(r['epoch_seconds']):.1f} s "
            f"({statistics.median(r['epoch_seconds']) / len(r['seeds']):.2f} s per seed, {r.get('mode', '?')})"
            for lab, r in ((la, ra), (lb, rb))) + "."]
    return "\n".join(lines) + "\n"


def compare_sweeps(dir_a: str | Path, dir_b: str | Path, out: Path) -> tuple[Path, Path]:
    a, b = read_sweep(dir_a), read_sweep(dir_b)
    differ = sweep_differences(a, b)
    if differ:
        print(f"warning: the sweeps differ in {', '.join(differ)}: compared as they are", file=sys.stderr)
    md, png = out.with_suffix(".md"), out.with_suffix(".png")
    md.write_text(sweep_markdown(a, b, differ))
    la, lb = _label(a, b), _label(b, a)
    plot_bands({la: [r["metrics"] for r in a["runs"]], lb: [r["metrics"] for r in b["runs"]]}, png,
               title=f"{la} vs {lb}: mean over seeds, +-1 std band, min-max range")
    return md, png


def compare(run_a: str | Path, run_b: str | Path, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    if is_sweep(run_a) or is_sweep(run_b):
        if not (is_sweep(run_a) and is_sweep(run_b)):
            single = run_b if is_sweep(run_a) else run_a
            raise ValueError(f"{single} is a single run, the other a seed sweep: compare two sweeps (--seeds "
                             "folders) or two runs (or one seed folder, e.g. SWEEP/seed-0, with a run)")
        out.parent.mkdir(parents=True, exist_ok=True)
        return compare_sweeps(run_a, run_b, out)
    a, b = read_run(run_a), read_run(run_b)
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
    parser.add_argument("run_a", help="a finished run folder (e.g. runs/torch), or a sweep's folder (--seeds)")
    parser.add_argument("run_b", help="another finished run folder (e.g. runs/flax), or another sweep's")
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
