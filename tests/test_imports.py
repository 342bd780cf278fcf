"""Every import statement of the package resolves, function-local ones included (issue 17, item 1).

A moved module (``clipstyle.cache`` → ``clipstyle.io.cache``) once broke a lazy import inside a function
that only ran on a CUDA machine, silently. This test reads every ``.py`` of ``clipstyle/`` with
:mod:`ast` — nothing of the package is executed — and resolves:

* ``import a.b.c`` and ``from a.b import c`` / ``from .x import y`` / ``from .. import z``, at module
  level and inside functions, methods, ``if``/``try`` blocks;
* for our own modules, strictly from the files: the module must exist as ``a/b.py`` or
  ``a/b/__init__.py``, and each imported name must be a submodule or a name the module defines,
  assigns or imports at its top level (a module with a ``__getattr__`` counts its ``__all__``);
* ``importlib.import_module("clipstyle....")`` calls with a literal name;
* third-party modules: the top-level name must be importable (``importlib.util.find_spec``, which
  does not execute the module), be in the standard library, or be one of the optional extras that
  may be absent (:data:`OPTIONAL`).

The resolver is checked on a small synthetic package first, so the test can fail.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "clipstyle"

#: Third-party modules that optional extras bring (absent on a core install).
OPTIONAL = frozenset({"gradio", "gradio_client", "ray", "dlib", "tensorboard", "mlflow", "wandb", "ninja",
                      "imageio_ffmpeg", "torchvision", "lpips", "playwright", "skimage", "cv2", "kornia",
                      "triton", "onnx", "onnxruntime", "tomli"})


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


class PackageIndex:
    """The modules of one package on disk and the names each defines at its top level (from ``ast``)."""

    def __init__(self, root: Path, package: str) -> None:
        self.root, self.package = root, package
        self._trees: dict[str, ast.Module] = {}
        self._names: dict[str, set[str]] = {}

    def module_file(self, module: str) -> Path | None:
        """``a/b.py`` or ``a/b/__init__.py`` of the dotted ``module``, or ``None``."""
        parts = module.split(".")
        base = self.root.joinpath(*parts)
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None

    def is_package(self, module: str) -> bool:
        path = self.module_file(module)
        return path is not None and path.name == "__init__.py"

    def modules(self) -> list[tuple[str, Path]]:
        """Every (dotted name, file) of the package."""
        out = []
        for path in sorted((self.root / self.package).rglob("*.py")):
            rel = path.relative_to(self.root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join(parts), path))
        return out

    def tree(self, module: str) -> ast.Module:
        if module not in self._trees:
            path = self.module_file(module)
            self._trees[module] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        return self._trees[module]

    def top_level_names(self, module: str) -> set[str]:
        """Names bound at the top level of ``module`` (defs, classes, assignments, imports, ``for``/``with``
        targets), looking into ``if``/``try``/``with`` blocks but not into functions or classes. With a
        module ``__getattr__``, the names of ``__all__`` (string items, and the keys of a dict given as
        ``*NAME``) count too."""
        if module in self._names:
            return self._names[module]
        names: set[str] = set()
        tree = self.tree(module)
        dicts: dict[str, set[str]] = {}

        def bind(target: ast.AST) -> None:
            for node in ast.walk(target):
                if isinstance(node, ast.Name):
                    names.add(node.id)

        def visit(body: list[ast.stmt]) -> None:
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        bind(t)
                        if isinstance(t, ast.Name) and isinstance(node.value, ast.Dict):
                            dicts[t.id] = {k.value for k in node.value.keys
                                           if isinstance(k, ast.Constant) and isinstance(k.value, str)}
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        names.add(alias.asname or alias.name.split(".")[0])
                elif isinstance(node, ast.ImportFrom):
                    for alias in node.names:
                        if alias.name != "*":
                            names.add(alias.asname or alias.name)
                elif isinstance(node, (ast.For, ast.AsyncFor)):
                    bind(node.target)
                    visit(node.body)
                    visit(node.orelse)
                elif isinstance(node, (ast.With, ast.AsyncWith)):
                    for item in node.items:
                        if item.optional_vars is not None:
                            bind(item.optional_vars)
                    visit(node.body)
                elif isinstance(node, ast.If):
                    visit(node.body)
                    visit(node.orelse)
                elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
                    visit(node.body)
                    for handler in node.handlers:
                        if handler.name:
                            names.add(handler.name)
                        visit(handler.body)
                    visit(node.orelse)
                    visit(node.finalbody)

        visit(tree.body)
        if "__getattr__" in names:
            for node in tree.body:
                if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                         for t in node.targets)
                        and isinstance(node.value, (ast.List, ast.Tuple))):
                    for elt in node.value.elts:
                        if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                            names.add(elt.value)
                        elif isinstance(elt, ast.Starred) and isinstance(elt.value, ast.Name):
                            names |= dicts.get(elt.value.id, set())
        self._names[module] = names
        return names


def _is_ours(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _third_party_ok(module: str) -> bool:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in OPTIONAL or top == "__future__":
        return True
    return importlib.util.find_spec(top) is not None  # top level only: nothing is executed


def check_package(root: Path, package: str) -> tuple[list[Problem], int]:
    """Resolve every import of ``package`` (found under ``root``); returns (problems, imports checked)."""
    index = PackageIndex(root, package)
    problems: list[Problem] = []
    checked = 0

    def check_ours(module: str, where: tuple[str, int], what: str) -> bool:
        if index.module_file(module) is None:
            problems.append(Problem(*where, f"{what}: no module {module!r} in the package"))
            return False
        return True

    for name, path in index.modules():
        rel = str(path.relative_to(root))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(index.tree(name)):
            where = (rel, getattr(node, "lineno", 0))
            if isinstance(node, ast.Import):
                for alias in node.names:
                    checked += 1
                    if _is_ours(alias.name, package):
                        parts = alias.name.split(".")
                        for i in range(1, len(parts) + 1):  # every parent package must exist too
                            if not check_ours(".".join(parts[:i]), where, f"import {alias.name}"):
                                break
                    elif not _third_party_ok(alias.name):
                        problems.append(Problem(*where, f"import {alias.name}: module not installed"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    up = node.level - 1
                    if up > len(base) - 1:
                        problems.append(Problem(*where, f"relative import beyond the top of {package}"))
                        continue
                    base = base[: len(base) - up] if up else base
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                shown = "." * node.level + (node.module or "")
                checked += 1
                if not _is_ours(module, package):
                    if not _third_party_ok(module):
                        problems.append(Problem(*where, f"from {shown} import ...: module not installed"))
                    continue
                if not check_ours(module, where, f"from {shown} import ..."):
                    continue
                defined = index.top_level_names(module)
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    checked += 1
                    sub = f"{module}.{alias.name}"
                    if not ((index.is_package(module) and index.module_file(sub) is not None)
                            or alias.name in defined):
                        problems.append(Problem(*where, f"from {shown} import {alias.name}: {module!r} neither "
                                                        f"defines it nor has such a submodule"))
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str) and _is_ours(node.args[0].value, package)
                  and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                       or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
                checked += 1
                check_ours(node.args[0].value, where, f"import_module({node.args[0].value!r})")
    return problems, checked


def test_every_import_of_the_package_resolves():
    problems, checked = check_package(ROOT, PACKAGE)
    assert checked > 500  # the walk really saw the package (~1000 import statements and names)
    assert not problems, "unresolved imports:\n" + "\n".join(map(str, problems))


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_resolver_finds_moved_modules_missing_names_and_lazy_imports(tmp_path):
    """A synthetic package with one broken import of each kind: every one is reported, the good ones are not."""
    _write(tmp_path, "pkg/__init__.py", "_LAZY = {'api': ('pkg.io.cache', 'root')}\n__all__ = [*_LAZY]\n"
                                        "def __getattr__(name):\n    raise AttributeError(name)\n")
    _write(tmp_path, "pkg/io/__init__.py", "")
    _write(tmp_path, "pkg/io/cache.py", "import os\ntry:\n    import json as js\nexcept ImportError:\n    js = None\n"
                                        "def root():\n    return os.getcwd()\nCONST: int = 3\n")
    _write(tmp_path, "pkg/kernels/__init__.py", "from .build import build\n")
    _write(tmp_path, "pkg/kernels/build.py", (
        "from __future__ import annotations\n"
        "import pkg.io.cache\n"                      # ok
        "from pkg import api\n"                      # ok: __getattr__ + __all__
        "from pkg.io import cache, CONST\n"          # CONST: not in pkg/io/__init__ -> problem 1
        "from ..io.cache import root, js, CONST\n"   # ok (names bound in try/except and annotated)
        "def build():\n"
        "    from ..cache import cache_root\n"       # moved module -> problem 2
        "    from . import missing_sub\n"            # neither a name nor a submodule -> problem 3
        "    import pkg.nothing.here\n"              # problem 4
        "    import numpy_but_misspelt_qq\n"         # third-party not installed -> problem 5
        "    import gradio\n"                        # optional extra: fine even when absent
        "    import importlib\n"
        "    importlib.import_module('pkg.io.gone')\n"  # problem 6
        "    return root()\n"))
    problems, checked = check_package(tmp_path, "pkg")
    texts = sorted(p.text for p in problems)
    assert len(problems) == 6, texts
    assert any("import CONST" in t for t in texts)
    assert any("no module 'pkg.cache'" in t for t in texts)
    assert any("import missing_sub" in t for t in texts)
    assert any("'pkg.nothing'" in t for t in texts)
    assert any("numpy_but_misspelt_qq" in t for t in texts)
    assert any("pkg.io.gone" in t for t in texts)
    assert all(p.file == str(Path("pkg/kernels/build.py")) for p in problems)
    assert checked >= 15


@pytest.mark.parametrize("line,bad", [("from .. import x", True), ("from ... import x", True),
                                      ("from . import build", False)])
def test_relative_imports_are_resolved_against_the_importing_module(tmp_path, line, bad):
    _write(tmp_path, "pkg/__init__.py", "")
    _write(tmp_path, "pkg/a/__init__.py", "")
    _write(tmp_path, "pkg/a/build.py", "")
    _write(tmp_path, "pkg/a/user.py", line + "\n")
    problems, _ = check_package(tmp_path, "pkg")
    assert bool(problems) is bad, problems
