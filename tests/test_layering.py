"""The layering of DESIGN.md as a test: arrows only point down, no import cycles.

The import graph of ``src/trainwell`` is read with :mod:`ast` (no module is imported):
every ``import`` and ``from ... import`` statement, at module level and inside functions,
absolute and relative (``from . import x`` included). Each module belongs to a layer, the
first package under ``trainwell`` (``errors``, ``nn``, ``optim``, ...); an arrow from a module to
one of a higher layer, or between two different packages of the same floor, fails the test.
Run with ``-s`` to print the graph summary (packages and arrow counts).
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "trainwell"

# Bottom to top (DESIGN.md, "Layers"). Packages on one floor may not import each other,
# except where ALLOWED_SIDEWAYS says so.
FLOORS: list[tuple[str, ...]] = [
    ("errors", "_version"),
    ("nn",),
    ("optim",),
    ("data",),
    ("train",),
    ("doctor", "transfer"),
    ("experiments",),
    ("integrations",),
    ("cli", "config"),
    ("",),  # the package root: trainwell/__init__.py (re-exports) and __main__.py
]
ALLOWED_SIDEWAYS = {("cli", "config")}  # the front: commands read the config model
RANK = {pkg: floor for floor, pkgs in enumerate(FLOORS) for pkg in pkgs}

# Cycles that another branch removes (issue 11 item 2, branch lr: the schedule modules).
# Listed so this test is green now; the test fails once the cycle is gone, so the entry
# cannot outlive the fix.
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left: the schedule cycle is broken


@dataclass(frozen=True)
class Arrow:
    """One import: ``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int
    in_function: bool
    type_only: bool  # under ``if TYPE_CHECKING:``: not executed at run time


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(base: str, names: list[str]) -> list[str]:
    """Targets of ``from base import names``: a submodule where one exists, else ``base``."""
    targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
    if len(targets) < len(names):
        targets.append(base)
    return targets


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _arrows_of(module: str, path: Path) -> list[Arrow]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _package_of(module, path)
    arrows: list[Arrow] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = _resolve(base, [a.name for a in node.names])
        for t in targets:
            if t == ROOT or t.startswith(ROOT + "."):
                arrows.append(Arrow(module, t, getattr(node, "lineno", 0), in_function, type_only))
        for child in ast.iter_child_nodes(node):
            visit(
                child,
                in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef),
                type_only or (isinstance(node, ast.If) and _is_type_checking(node)),
            )

    visit(tree, False, False)
    return arrows


ARROWS = [a for module, path in MODULES.items() for a in _arrows_of(module, path)]


def layer(module: str) -> str:
    """The layer of a module: the first package under ``trainwell`` ("" for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else ""


def bad_arrow(source: str, target: str) -> bool:
    """Whether an import from ``source`` to ``target`` points against the layering."""
    a, b = layer(source), layer(target)
    if a == b or (a, b) in ALLOWED_SIDEWAYS:
        return False
    return RANK[b] >= RANK[a]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One path per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                components.append(_cycle_path(sorted(comp), edges))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return components


def _cycle_path(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A closed path through ``component`` from its first module back to it (BFS)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, set()) & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def _runtime_edges() -> dict[str, set[str]]:
    # Type-only imports never run, so they cannot close a cycle at import time.
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for a in ARROWS:
        if not a.type_only and a.target != a.source:
            edges[a.source].add(a.target)
    return edges


def test_the_graph_is_read():
    # Guards against a parser that silently sees nothing: known arrows must be found.
    pairs = {(a.source, a.target) for a in ARROWS}
    assert ("trainwell.cli.runner", "trainwell.config") in pairs
    assert ("trainwell.train.trainer", "trainwell.optim") in pairs or any(
        s == "trainwell.train.trainer" and layer(t) == "optim" for s, t in pairs
    )
    assert len(MODULES) > 60 and len(ARROWS) > 150


def test_every_module_has_a_layer():
    unknown = sorted({layer(m) for m in MODULES} - set(RANK))
    assert unknown == [], f"packages missing from FLOORS: {unknown}"


def test_arrows_only_point_down():
    bad = [
        f"{a.source} -> {a.target} (line {a.line}: {layer(a.source) or ROOT} may not import "
        f"{layer(a.target) or ROOT})"
        for a in ARROWS
        if bad_arrow(a.source, a.target)
    ]
    assert bad == [], "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = find_cycles(_runtime_edges())
    unknown = [" -> ".join(c) for c in cycles if not any(set(c) <= k for k in KNOWN_CYCLES)]
    assert unknown == [], "import cycles:\n" + "\n".join(unknown)
    stale = [sorted(k) for k in KNOWN_CYCLES if not any(set(c) <= k for c in cycles)]
    assert stale == [], f"these cycles are gone; remove them from KNOWN_CYCLES: {stale}"


# Loading a user's own model or data named in their config (model.target, data.target) is
# an import by name by design; it is the only one.
USER_CODE_LOADERS = {"trainwell.cli.targets"}


def test_no_imports_by_string():
    calls = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in ("import_module", "__import__") and module not in USER_CODE_LOADERS:
                    calls.append(f"{module}:{node.lineno}")
    assert calls == [], f"imports by string: {calls}"


# Modules allowed to keep a trainwell import inside a function (none: every arrow is visible
# at module level; only optional third-party packages stay lazy). Fails once stale.
FUNCTION_IMPORTS_LEFT: set[str] = set()


def test_trainwell_imports_sit_at_module_level():
    # An import inside a function hides an arrow from a reader; trainwell's own modules are
    # cheap to import once torch is (optional third-party packages may stay lazy).
    inside = sorted({a.source for a in ARROWS if a.in_function and not a.type_only})
    assert [m for m in inside if m not in FUNCTION_IMPORTS_LEFT] == []
    assert sorted(FUNCTION_IMPORTS_LEFT - set(inside)) == [], "stale FUNCTION_IMPORTS_LEFT"


@pytest.mark.parametrize(
    ("source", "target", "bad"),
    [
        ("trainwell.nn.init", "trainwell.errors", False),
        ("trainwell.optim.clip", "trainwell.data", True),
        ("trainwell.doctor.loop", "trainwell.transfer", True),
        ("trainwell.cli.runner", "trainwell.config.io", False),
        ("trainwell.config.io", "trainwell.cli", True),
        ("trainwell.cli", "trainwell", True),
        ("trainwell", "trainwell.cli", False),
        ("trainwell.doctor.rules", "trainwell.doctor.findings", False),
    ],
)
def test_bad_arrow_rule(source, target, bad):
    assert bad_arrow(source, target) is bad


def test_find_cycles_reports_the_path():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_summary(capsys):
    """Print the graph summary (shown with ``pytest -s``): modules, arrows per package pair."""
    per_layer = Counter(layer(m) or ROOT for m in MODULES)
    pairs = Counter(
        (layer(a.source) or ROOT, layer(a.target) or ROOT)
        for a in ARROWS
        if layer(a.source) != layer(a.target)
    )
    inside = sum(1 for a in ARROWS if a.in_function)
    lines = [f"import graph of {ROOT}: {len(MODULES)} modules, {len(ARROWS)} arrows "
             f"({inside} inside functions)"]
    for floor in FLOORS:
        for pkg in floor:
            name = pkg or ROOT
            outs = ", ".join(f"{t} {n}" for (s, t), n in sorted(pairs.items()) if s == name)
            lines.append(f"  {name:<12} {per_layer[name]:>3} modules -> {outs or '-'}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert sum(per_layer.values()) == len(MODULES)
