"""Side-by-side report of run folders: `python -m common.compare RUN_A RUN_B [RUN ...] --out runs/comparison`.

Writes OUT.md (a summary and a per-epoch table, a column per run, differences against the first)
and OUT.png (every run's learning curves overlaid). Given
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


def trainer_name(run: dict) -> str:
    """torch, flax (Linen) or flax-nnx: the trainer and, for flax_impl, its API when not the default."""
    config = run["config"]
    name = config.get("framework", "?")
    return f"{name}-{config['api']}" if name == "flax" and config.get("api", "linen") != "linen" else name


def labels(runs: list[dict]) -> list[str]:
    """Each run's trainer name, or its folder name where two runs share a trainer."""
    names = [trainer_name(r) for r in runs]
    return names if len(set(names)) == len(names) else [Path(r["dir"]).name for r in runs]


def _label(run: dict, other: dict) -> str:
    """The framework name, or the folder name where both runs share a framework."""
    return labels([run, other])[0]


def _fmt_seconds(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# What must be equal for two runs' numbers, and their speed, to be comparable.
COMPARABLE = ("epochs", "batch_size", "kernel_size", "lr", "train_size", "test_size")


def differences(a: dict, b: dict) -> list[str]:
    """The settings in which two runs differ, as 'name A vs B'."""
    ca, cb = a["config"], b["config"]
    return [f"{k} {ca.get(k)} vs {cb.get(k)}" for k in COMPARABLE if ca.get(k) != cb.get(k)]


def comparison_markdown(runs: list[dict], differ: dict[int, list[str]] | None = None) -> str:
    """Any number of runs side by side, a column each; with three or more, differences against the first."""
    names = labels(runs)
    first = runs[0]
    summaries, configs = [r["summary"] for r in runs], [r["config"] for r in runs]
    lines = [f"# {' vs '.join(names)}", "", "Runs: " + ", ".join(f"`{r['dir']}`" for r in runs) + ".", ""]
    if len(runs) > 2:
        lines += [f"Differences, in brackets, are against the first run ({names[0]}).", ""]

    def row(name, cells):
        return f"| {name} | " + " | ".join(cells) + " |"

    def against_first(key: str, pct: bool) -> list[str]:
        """Each run's summary value; from the second run on, with three runs or more, its difference."""
        scale, spec = (100, ".2f") if pct else (1, ".4f")
        base = summaries[0][key]
        return [f"{scale * s[key]:{spec}}{'%' if pct else ''}"
                + (f" ({scale * (s[key] - base):+{spec}})" if i and len(runs) > 2 else "")
                for i, s in enumerate(summaries)]

    rows = [
        ("test accuracy", against_first("test_accuracy", pct=True)),
        ("test correct", [f"{s['test_correct']}" for s in summaries]),
        ("test loss", against_first("test_loss", pct=False)),
        ("seconds per epoch (mean)", [f"{s['mean_epoch_seconds']:.2f}" for s in summaries]),
        ("compile seconds", [_fmt_seconds(s.get("compile_seconds")) for s in summaries]),
        ("total seconds", [f"{s['total_seconds']:.1f}" for s in summaries]),
        ("parameters", [f"{s['parameters']:,}" for s in summaries]),
        ("device", [s["device"] for s in summaries]),
        ("versions", [", ".join(f"{k} {v}" for k, v in c.get("versions", {}).items()) for c in configs]),
        ("epochs, batch, lr, kernel, seed",
         [f"{c['epochs']}, {c['batch_size']}, {c['lr']}, {c['kernel_size']}, {c['seed']}" for c in configs]),
    ]
    lines += ["| | " + " | ".join(names) + " |", "|---" * (len(runs) + 1) + "|"] + [row(n, c) for n, c in rows]
    differ = {i: differences(first, r) for i, r in enumerate(runs) if i} if differ is None else differ
    lines.append("")
    for i, run in enumerate(runs[1:], start=1):
        if differ.get(i):
            which = f" for {names[i]}" if len(runs) > 2 else ""
            lines += [f"**Not comparable run for run: the runs differ in {', '.join(differ[i])}.** No speed ratio is "
                      f"given{which}; accuracies and curves are shown as they are.", ""]
        else:
            speed = summaries[0]["mean_epoch_seconds"] / run["summary"]["mean_epoch_seconds"]
            lines += [f"{names[i]} trains {speed:.2f}x as fast as {names[0]} per epoch (mean epoch seconds, compile "
                      "excluded).", ""]
    timings = [r["timings"].get("epoch_seconds", []) for r in runs]
    columns = [("train loss", "train_loss", False), ("train acc", "train_accuracy", True),
               ("test acc", "test_accuracy", True)]
    header = ["epoch"] + [f"{title} {n}" for title, _, _ in columns for n in names] + [f"s {n}" for n in names]
    lines += ["## Per epoch", "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for i in range(max(len(r["metrics"]) for r in runs)):
        cells = [str(i + 1)]
        for _, key, pct in columns:
            for r in runs:
                m = r["metrics"][i] if i < len(r["metrics"]) else None
                cells.append("" if m is None else f"{100 * m[key]:.2f}%" if pct else f"{m[key]:.4f}")
        cells += [f"{t[i]:.1f}" if i < len(t) else "" for t in timings]
        lines.append("| " + " | ".join(cells) + " |")
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


def compare(*folders: str | Path, out: str | Path) -> tuple[Path, Path]:
    """OUT.md and OUT.png for any number of finished runs, or for two seed sweeps."""
    out = Path(out)
    if len(folders) < 2:
        raise ValueError("give two run folders or more")
    sweeps = [is_sweep(f) for f in folders]
    if any(sweeps):
        if not all(sweeps) or len(folders) != 2:
            single = next((f for f, s in zip(folders, sweeps) if not s), None)
            raise ValueError(f"{single} is a single run, the other a seed sweep: compare two sweeps (--seeds "
                             "folders) or runs (or one seed folder, e.g. SWEEP/seed-0, with a run)" if single else
                             "seed sweeps are compared two at a time")
        out.parent.mkdir(parents=True, exist_ok=True)
        return compare_sweeps(*folders, out)
    runs = [read_run(f) for f in folders]
    out.parent.mkdir(parents=True, exist_ok=True)
    md, png = out.with_suffix(".md"), out.with_suffix(".png")
    differ = {i: differences(runs[0], r) for i, r in enumerate(runs) if i}
    for i, d in differ.items():
        if d:
            print(f"warning: the runs {runs[0]['dir']} and {runs[i]['dir']} differ in {', '.join(d)}: compared as "
                  "they are, without a speed ratio", file=sys.stderr)
    md.write_text(comparison_markdown(runs, differ))
    names = labels(runs)
    plot_curves({n: r["metrics"] for n, r in zip(names, runs)}, png, title=" vs ".join(names))
    return md, png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="finished run folders (e.g. runs/torch runs/flax runs/nnx: a column each, differences "
                             "against the first), or two seed sweeps' folders (--seeds)")
    parser.add_argument("--out", default="runs/comparison", help="output path without suffix (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        md, png = compare(*args.runs, out=args.out)
    except (FileNotFoundError, KeyError, ValueError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    print(f"wrote {md} and {png}")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
