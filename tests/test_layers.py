"""The code's layers: imports go one way (no module imports one that imports it back, at any depth,
inside a function or not), the command lines sit on top, and nothing reads a private attribute."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "common", "torch_impl", "flax_impl", "benchmarks", "parity", "examples")
COMMAND_LINES = ("torch_impl.train", "flax_impl.train")


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that `name` imports anywhere in its file (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            candidates = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            inside_own_package = path.name == "__init__.py" and candidate.startswith(name + ".")
            if candidate and candidate != name and not inside_own_package:
                targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: every strongly connected group of two or more modules (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_cycle_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert {"flax_impl.train", "flax_impl.sweep", "common.cli", "common.sweep", "torch_impl.cuda_graph"} <= set(graph)
    assert cycles(graph) == []


@pytest.mark.parametrize("command_line", COMMAND_LINES)
def test_the_command_lines_are_on_top(command_line):
    """Only benchmarks (and tests) may import a trainer's command line; the library never does."""
    importers = [m for m, targets in import_graph().items() if command_line in targets]
    assert all(m.startswith("benchmarks") for m in importers), importers


MACHINERY = ("common.runner", "common.cli", "common.sweep", "common.run_files", "flax_impl.training",
             "flax_impl.sweep", "flax_impl.train", "torch_impl.training", "torch_impl.sweep", "torch_impl.train")


def test_the_models_and_the_math_import_no_run_machinery():
    """What a reader ports (the models, the steps) stands alone: nothing of a run, at any depth."""
    graph = import_graph()
    for bottom in ("flax_impl.model", "flax_impl.nnx_model", "flax_impl.steps", "flax_impl.nnx_steps",
                   "flax_impl.custom_vjp", "torch_impl.model", "torch_impl.steps"):
        reached, todo = set(), [bottom]
        while todo:
            for target in graph[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        assert not reached & set(MACHINERY), (bottom, sorted(reached & set(MACHINERY)))


def test_the_loader_stands_alone():
    """data/ is the bottom layer both frameworks share: it imports no other package of the project."""
    graph = import_graph()
    reached = {target for name, targets in graph.items() if name.split(".")[0] == "data" for target in targets}
    assert {target.split(".")[0] for target in reached} <= {"data"}, sorted(reached)


def private_attributes(source: str, where: str) -> list[str]:
    """`obj._name` reads where obj is not self or cls: another object's private attribute."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and ast.unparse(node.value) not in ("self", "cls")):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_private_attribute_check_sees_them():
    source = "x = traced._params\ny = jax.stages.Traced._meta_tys_flat\nz = self._mine\nw = cls._ours\nv = a.__dict__\n"
    assert private_attributes(source, "probe") == ["probe:1: traced._params",
                                                   "probe:2: jax.stages.Traced._meta_tys_flat"]


def test_no_private_attribute_of_another_object_is_read():
    """jax, flax, optax and torch change their private attributes without notice; ours stay inside their class."""
    paths = [*modules().values(), *(REPO / "tests").glob("*.py"), *(REPO / "parity_tests").glob("*.py")]
    assert any(path.parts[-2:] == ("parity", "checks.py") for path in paths)
    hits = [hit for path in paths for hit in private_attributes(path.read_text(), str(path.relative_to(REPO)))]
    assert hits == []


def test_a_training_run_does_not_import_scipy_stats():
    """scipy.stats (Welch's interval, for common.compare) costs 0.3 s of a run's start-up: the
    trainers' command lines must not pull it in through the modules they share with the report."""
    code = "import sys, flax_impl.train, torch_impl.train; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.realdata
@pytest.mark.parametrize("command", [
    ["benchmarks.seeds", "--counts", "1,2", "--k", "2", "--reps", "1", "--rounds", "1"],
    ["benchmarks.rows", "nnx-jit", "--steps", "4", "--warmup", "2", "--repeats", "1"],
    ["benchmarks.rows", "nnx-jit", "--gather", "inside", "--cached", "--steps", "4", "--warmup", "2", "--repeats", "1"],
    ["benchmarks.rows", "torch-original", "--steps", "4", "--warmup", "2", "--repeats", "1"],
], ids=["seeds", "rows-nnx-jit", "rows-nnx-jit-cached", "rows-original"])
def test_the_benchmarks_run_on_what_the_library_now_offers(real_data, command, tmp_path):
    """A smoke run of the benchmarks that import the library's internals (tiny settings, no timing
    checked): a renamed function fails here, not on a lent GPU (gpu_check.sh's CPU dry run found one)."""
    out = ["--out", str(tmp_path / "seeds")] if command[0] == "benchmarks.seeds" else []
    proc = subprocess.run([sys.executable, "-m", *command, *out], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
