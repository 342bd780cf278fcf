"""The house rules that a reviewer would otherwise check by hand (issue 17, item 6).

The import graph of ``clipstyle`` is built with :mod:`ast` from every import statement that can run,
function-local ones included (a lazy import is an arrow like any other; only ``if TYPE_CHECKING:`` blocks,
which never run, are left out), and checked for cycles, between modules and between packages, and for
arrows that point up the layer order of the README's house section. File sizes are checked against the
house limit. A rule broken on purpose is listed below with its reason; an entry that no longer applies
fails too, so the lists only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "clipstyle"
MAX_LINES = 500

#: Files allowed over :data:`MAX_LINES`, each with its reason (an entry that fits again fails the test: remove it).
LONG_FILES: dict[str, str] = {
    "clipstyle/io/cache.py": "507 lines: the download cache is being split by the io owner (issue 17, item 6)",
}

#: The layers, top to bottom (README, "The house"): a module may import its own layer and the layers below.
#: ``errors`` is the bottom: every layer may raise its errors; it imports nothing of ours.
LAYERS: list[set[str]] = [
    {"__main__", "cli", "ui", "batch"},
    {"workflows", "pipelines"},
    {"inversion", "optimize", "render", "guidance", "encoders", "latents"},
    {"generator"},
    {"kernels"},
    {"io"},
    {"errors"},
]
#: Top-level modules that only re-export lazily (``clipstyle/__init__.py``'s ``__getattr__``) sit above all.
FACADES = {"__init__", "_version", "__version__"}

#: Arrows that break the layer order on purpose: ``(importer, imported)`` → reason. Empty: none left.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: all of the tree except the bodies of ``if TYPE_CHECKING:`` (type hints only,
    never imported at run time, so never part of a cycle)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The clipstyle modules ``name`` imports anywhere in its file (``from pkg import mod`` names ``pkg.mod``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()

    def add(target: str) -> None:
        # the deepest known module that is target or one of its parents
        parts = target.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in known:
                out.add(candidate)
                return
            parts.pop()

    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "clipstyle":
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, path.name == "__init__.py", node)
            if target.split(".")[0] != "clipstyle":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                add(sub if sub in known else target)
    out.discard(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each as a sorted list. A package is a node
    like any module: its ``__init__`` runs its imports too."""
    edges = graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:  # clipstyle itself: the lazy facade
        return None
    top = parts[1]
    if top in FACADES:
        return None
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} is in no layer of the house: add its package to LAYERS (and the README)")


# --------------------------------------------------------------------------- the rules


def test_the_graph_sees_function_local_imports(graph):
    # a known lazy import: the CLI's guard imports the checks inside the function body
    assert "clipstyle.cli.checks" in graph["clipstyle.cli.common"]


def test_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_no_arrows(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import clipstyle.a\nelse:\n"
                   "    import clipstyle.b\ndef f():\n    import clipstyle.c\n")
    assert imports_of("clipstyle.m", mod, {"clipstyle.a", "clipstyle.b", "clipstyle.c"}) == \
        {"clipstyle.b", "clipstyle.c"}


def test_no_import_cycle(graph):
    cycles = find_cycles(graph)
    shown = ["  " + " ↔ ".join(c) for c in cycles]
    assert not cycles, "import cycles among clipstyle modules:\n" + "\n".join(shown)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The arrows between the top-level packages (``clipstyle.guidance`` → ``clipstyle.latents``…)."""
    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for a, bs in graph.items():
        for b in bs:
            if top(a) != top(b):
                out.setdefault(top(a), set()).add(top(b))
    return out


#: Packages allowed to import each other, each with its reason. An entry whose cycle is gone fails the test.
ALLOWED_PACKAGE_CYCLES: dict[tuple[str, ...], str] = {
    ("clipstyle.pipelines", "clipstyle.workflows"):
        "one layer; workflows/ calls pipelines.common's helpers (parse_seeds, latent_file_of, "
        "network_for_latents, load_network, load_guide): moving them below makes the arrow one-way",
}


def test_no_cycle_between_packages(graph):
    # function-local imports both ways (latents ↔ guidance) tie two packages as surely as a module cycle
    cycles = {tuple(c) for c in find_cycles(package_graph(graph))}
    unexplained = cycles - set(ALLOWED_PACKAGE_CYCLES)
    assert not unexplained, "packages importing each other: " + "; ".join(" ↔ ".join(c) for c in unexplained)
    stale = set(ALLOWED_PACKAGE_CYCLES) - cycles
    assert not stale, f"remove these from ALLOWED_PACKAGE_CYCLES, they are gone: {stale}"


def test_every_module_is_in_a_layer(graph):
    for name in graph:
        layer_of(name)


def test_no_arrow_points_up(graph):
    upward = []
    for a, bs in graph.items():
        la = layer_of(a)
        for b in bs:
            lb = layer_of(b)
            if la is None or lb is None or lb >= la:
                continue
            if (a, b) not in ALLOWED_UPWARD:
                upward.append(f"  {a} → {b}")
    assert not upward, "imports against the layer order (README, The house):\n" + "\n".join(sorted(upward))


def test_allowed_upward_arrows_still_exist(graph):
    stale = [k for k in ALLOWED_UPWARD if k[1] not in graph.get(k[0], set())]
    assert not stale, f"remove these from ALLOWED_UPWARD, they are gone: {stale}"


def test_io_and_errors_import_nothing_of_ours_but_errors(graph):
    bad = sorted(f"  {a} → {b}" for a, bs in graph.items() for b in bs
                 if a.split(".")[1] in ("io", "errors") and b.split(".")[1] not in ("io", "errors")
                 and not (a.split(".")[1] == "io" and b.split(".")[1] == "io"))
    bad += sorted(f"  {a} → {b}" for a, bs in graph.items() for b in bs if a == "clipstyle.errors")
    assert not bad, "io and errors import nothing of ours except errors:\n" + "\n".join(bad)


def test_no_file_over_the_limit():
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    unexplained = {k: v for k, v in long.items() if k not in LONG_FILES}
    assert not unexplained, f"files over {MAX_LINES} lines (split them by concept): {unexplained}"
    stale = [k for k in LONG_FILES if k not in long]
    assert not stale, f"remove these from LONG_FILES, they fit now: {stale}"
