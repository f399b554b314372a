"""`python -m parity.catalogue` (`make catalogue`): how many real porting bugs the proof catches, measured.

Every entry of parity.bugs (a known porting bug as a small change to one of the six proven ports, or
a control that keeps the port the same model) is applied to a temporary copy of the repository and its
model's proof run there (parity.mutants); the working tree is never touched. Writes docs/catalogue.md,
rewritten after every entry: the recall (bugs caught / bugs) and the false alarms (controls failed) at
the top, then a row per entry with the check that caught it first, its message and the seconds it took.
Exits 1 if a bug is missed without an explanation or a control fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import platform
import sys
import time
from pathlib import Path

from parity.bugs import ENTRIES, NOT_APPLICABLE
from parity.mutants import MODELS, Entry, Outcome, cores_each, run

REPO = Path(__file__).resolve().parents[1]

# Proofs run two at a time by default, each kept to its share of the cores (parity.mutants.thread_limits):
# a proof alone leaves part of a 2-core CPU idle (compiling, Python, its pytest or kit machinery). Measured
# on a 2-core AMD EPYC, four entries (one each of convnet, mnist_net, nanogpt, resnet18): one at a time
# 136.7 s wall (user 143 s), two at a time at one thread each 85.8 s (user 140 s), 1.59x.
JOBS = 2


def machine() -> str:
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def cell(text: str, limit: int = 400) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verdict(outcome: Outcome, kit: bool = False) -> str:
    """The suite's verdict, or (kit) the kit's alone."""
    e = outcome.entry
    caught_by = outcome.kit_caught_by if kit else outcome.caught_by
    if e.control:
        return "passed (no false alarm)" if caught_by is None else "FALSE ALARM"
    if caught_by is not None:
        return "caught"
    if kit and e.kit_unreachable:
        return "out of the kit's reach"
    return "missed, explained" if e.miss_explained else "MISSED"


def column(outcomes: list[Outcome], kit: bool) -> str:
    bugs = [o for o in outcomes if not o.entry.control]
    controls = [o for o in outcomes if o.entry.control]
    unreachable = sum(verdict(o, kit) == "out of the kit's reach" for o in bugs)
    bugs = [o for o in bugs if verdict(o, kit) != "out of the kit's reach"]
    caught = sum(verdict(o, kit) == "caught" for o in bugs)
    explained = sum(verdict(o, kit) == "missed, explained" for o in bugs)
    missed = sum(verdict(o, kit) == "MISSED" for o in bugs)
    alarms = sum(verdict(o, kit) == "FALSE ALARM" for o in controls)
    return (f"{caught} of {len(bugs)} bugs caught ({100 * caught / max(len(bugs), 1):.0f}%)"
            + (f", {explained} missed with the reason below" if explained else "")
            + (f", **{missed} missed unexplained**" if missed else "")
            + f"; false alarms: {alarms} of {len(controls)} controls"
            + (f" ({unreachable} more bugs are in code the kit never runs: the trainers' own machinery)"
               if unreachable else ""))


def report(outcomes: list[Outcome], total: int, seconds: float, jobs: int = 1) -> str:
    bugs = [o for o in outcomes if not o.entry.control]
    controls = [o for o in outcomes if o.entry.control]
    done = "" if len(outcomes) == total else f" (interrupted: {len(outcomes)} of {total} entries run)"
    lines = [
        "# The porting-bug catalogue", "", "Back to the [front page](../README.md).", "",
        f"Made by `python -m parity.catalogue` (`make catalogue`) on {machine()}, "
        f"{datetime.date.today().isoformat()}, in {seconds / 60:.1f} minutes{done}"
        + (f", {jobs} proofs at a time (a row's seconds are its proof's wall time, the CPU shared)." if jobs > 1 else "."),
        "",
        f"- **The kit alone** (`parity/`: the examples' proofs, and for the convnet "
        f"parity_tests/test_kit_convnet.py): {column(outcomes, kit=True)}.",
        f"- **The whole suite** (the kit, and for the convnet every test of parity_tests): "
        f"{column(outcomes, kit=False)}.", "",
        "Each bug is a small change to a port, never to a check or a test: parity/bugs.py has its exact text and "
        "the reason it arises (where an entry rewrites the port's structure, as to nn.Sequential or to "
        "nnx.MultiHeadAttention, it also edits what its proof says of the port, the `Port`'s weight map and layer "
        "names, as the user who wrote that port would). The catalogue applies it to a temporary copy of the "
        "repository and runs the proof of its model there, fastest checks first, stopping at the first failure: "
        "for the five examples the kit's checks (`python -m parity examples.<model>.test_proof --first-failure`, "
        "with `--accuracy` for mnist_net, "
        "bn_net, nanogpt and word_language_model: ResNet-18's accuracy over seeds takes 40 minutes), for the convnet `pytest -x` over "
        "parity_tests, the kit's test (test_kit_convnet.py) first, then the hand-written tests in order of speed: "
        "the kit's verdict is its test's, the whole suite's the first failure of any. \"Caught by\" is the check "
        "or test that failed first, and the message is its own: where the two sides split; \"the kit alone\" "
        "says what the kit's test said, for the convnet.", "",
        "| # | bug | category | model | result | caught by | its message | the kit alone | s |",
        "|---:|---|---|---|---|---|---|---|---:|",
    ]
    for i, o in enumerate(bugs, 1):
        e = o.entry
        message = o.message if o.caught_by else (e.miss_explained or o.message)
        kit = ("" if e.model != "convnet" else
               f"{verdict(o, kit=True)}" + (f" by {o.kit_caught_by}: {cell(o.kit_message, 200)}" if o.kit_caught_by else ""))
        lines.append(f"| {i} | {cell(e.name)} | {e.category} | {e.model} | {verdict(o)} | {o.caught_by or ''} | "
                     f"{cell(message)} | {kit or 'the same'} | {o.seconds:.0f} |")
    lines += ["", "How each bug arises and where such bugs are reported:", ""]
    lines += [f"- **{o.entry.name}** ({o.entry.model}): {o.entry.why}."
              + (f" Out of the kit's reach: {o.entry.kit_unreachable}." if o.entry.kit_unreachable else "")
              for o in bugs]
    lines += ["", "## Controls: the same model, written otherwise (the proof must pass them)", "",
              "| change | model | result | what failed, if anything | s |", "|---|---|---|---|---:|"]
    for o in controls:
        lines.append(f"| {cell(o.entry.name)}: {cell(o.entry.why)} | {o.entry.model} | {verdict(o)}"
                     + (f" (the kit alone: {verdict(o, kit=True)})" if o.entry.model == "convnet" else "") + " | "
                     f"{cell(o.message) if o.caught_by else ''} | {o.seconds:.0f} |")
    lines += ["", "## Categories no model here can show", ""]
    lines += [f"- {name}: {why}." for name, why in NOT_APPLICABLE.items()]
    return "\n".join(lines) + "\n"


def select(entries: list[Entry], only: list[str], models: list[str] | None) -> list[Entry]:
    chosen = [e for e in entries if (not only or any(o.lower() in e.name.lower() for o in only))
              and (not models or e.model in models)]
    if not chosen:
        raise SystemExit("error: no entry matches; the entries are:\n" + "\n".join(f"  {e.name} ({e.model})"
                                                                             for e in entries))
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.catalogue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], help="entries whose name contains this (repeatable)")
    parser.add_argument("--model", action="append", choices=MODELS, help="one model's entries (repeatable)")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the accuracy over seeds (faster, weaker)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per proof (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=JOBS,
                        help="proofs run side by side (default: %(default)s; the seconds of a row are then shared)")
    parser.add_argument("--out", default=str(REPO / "docs" / "catalogue.md"), help="the report (default: %(default)s)")
    args = parser.parse_args(argv)
    entries = select(ENTRIES, args.only, args.model)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    # Made before the first proof: a missing folder failed the report's first write, and the pool then ran
    # every other entry (the whole catalogue: 55 minutes) before the error surfaced, the report lost.
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # Side by side, each proof gets its share of the cores (see parity.mutants.thread_limits).
    threads = None if args.jobs == 1 else cores_each(args.jobs)
    start, done = time.perf_counter(), {}
    # Each proof is a process of its own in a copy of the repository, so N run side by side; threads only
    # wait on them. The report keeps the entries' order whatever order they finish in.
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run, entry, not args.no_accuracy, args.timeout, threads): i
                   for i, entry in enumerate(entries)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            outcome = done[i] = future.result()
            print(f"[{len(done)}/{len(entries)}] {outcome.entry.model}: {outcome.entry.name}: {verdict(outcome)}"
                  f"{' by ' + outcome.caught_by if outcome.caught_by else ''} ({outcome.seconds:.0f} s)", flush=True)
            outcomes = [done[k] for k in sorted(done)]
            _replace(args.out, report(outcomes, len(entries), time.perf_counter() - start, args.jobs))
    print(f"wrote {args.out}")
    bad = [o for o in outcomes if {verdict(o), verdict(o, kit=True)} & {"MISSED", "FALSE ALARM"}]
    return 1 if bad else 0


def _replace(path, text: str) -> None:
    """Write the report whole or not at all (a temporary file beside it, then os.replace)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())

