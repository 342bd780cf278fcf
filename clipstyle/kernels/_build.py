"""Lazy builds of the custom-op extensions with ``torch.utils.cpp_extension.load`` (ninja).

Nothing here runs at import: an op's ``cuda.load()`` calls :func:`build` on its first CUDA use.

* Build folder: ``<cache>/<name>-<first 12 hex digits of the sha256 of the sources and flags>``, where
  ``<cache>`` is ``$CLIPSTYLE_KERNEL_CACHE``, else ``<clipstyle cache>/kernels`` (``$CLIPSTYLE_CACHE`` or
  the platform cache folder). Editing a source gives a new folder, so a stale build is never loaded.
* A file lock (``fcntl``) around the build: concurrent processes wait for one compiler run.
* The loaded module is memoised per process (``functools.lru_cache``), and so is a failure: a
  process asks the compiler once, and later calls re-raise the same :class:`KernelBuildError`.
* ``TORCH_CUDA_ARCH_LIST`` is used as set; when unset, torch picks the visible GPU's architecture,
  and without a GPU (a compile-only check) ``9.0`` is used.

Errors are :class:`KernelBuildError` with one readable message: no ``nvcc``, ``CUDA_HOME`` unset,
or the first lines of the compiler's error output.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Iterator

from clipstyle.errors import UserRuntimeError

__all__ = ["KernelBuildError", "build", "cache_dir", "cuda_toolkit_problem", "source_dir"]

KERNELS_DIR = Path(__file__).resolve().parent
CACHE_ENV = "CLIPSTYLE_KERNEL_CACHE"
# nvcc flags shared by every op (no --use_fast_math: it would change results vs. the reference).
NVCC_FLAGS = ("-O3", "-DCLIPSTYLE_WITH_CUDA")  # the C++ standard is torch's choice (C++20 for torch 2.10+)
CXX_FLAGS = ("-O3",)
# Architecture compiled for when no GPU is visible and TORCH_CUDA_ARCH_LIST is unset (a compile check).
DEFAULT_ARCH_WITHOUT_DEVICE = "9.0"


class KernelBuildError(UserRuntimeError):
    """A custom op could not be built or loaded; the message says why in one or a few lines."""


def source_dir(op: str) -> Path:
    """Folder of an op's sources (``clipstyle/kernels/<op>``)."""
    return KERNELS_DIR / op


def cache_dir() -> Path:
    """Root folder of the extension builds (not created here)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from ..cache import cache_root

    return cache_root() / "kernels"


def _is_toolkit(folder: Path) -> bool:
    """A CUDA toolkit root: nvcc, the runtime headers and libcudart."""
    libs = [folder / d for d in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib")]
    return ((folder / "bin" / "nvcc").exists() and (folder / "include" / "cuda_runtime.h").exists()
            and any(any(d.glob("libcudart.so*")) for d in libs if d.is_dir()))


def _cuda_home() -> tuple[str | None, str | None]:
    """(toolkit root, None) or (None, why not). ``$CUDA_HOME`` / ``$CUDA_PATH`` win when set."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(var)
        if value:
            if _is_toolkit(Path(value)):
                return value, None
            return None, f"{var}={value} is not a CUDA toolkit (needs bin/nvcc, include/cuda_runtime.h, libcudart)"
    nvcc = shutil.which("nvcc")
    candidates = [Path(nvcc).resolve().parent.parent] if nvcc else []
    candidates += [Path("/usr/local/cuda"), *sorted(Path("/usr/local").glob("cuda-*"), reverse=True)]
    for folder in candidates:
        if _is_toolkit(folder):
            return str(folder), None
    if nvcc is None:
        return None, "nvcc not found (install the CUDA toolkit and set CUDA_HOME, e.g. CUDA_HOME=/usr/local/cuda)"
    return None, f"CUDA_HOME is not set and no toolkit was found next to {nvcc} or in /usr/local/cuda*"


def cuda_toolkit_problem() -> str | None:
    """Why a CUDA build cannot even start (no nvcc, no CUDA_HOME, torch without CUDA), or ``None``."""
    import torch

    if torch.version.cuda is None:
        return "this torch build has no CUDA support"
    return _cuda_home()[1]


def _digest(sources: list[Path], flags: tuple[str, ...], arch: str) -> str:
    h = hashlib.sha256()
    for path in sources:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for header in sorted(KERNELS_DIR.rglob("*.h")):  # ops may share headers
        h.update(header.name.encode())
        h.update(header.read_bytes())
    h.update("\0".join(flags).encode())
    h.update(arch.encode())
    return h.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _first_error_lines(text: str, limit: int = 6) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return "\n".join((errors or lines[-limit:])[:limit])


def _load(name: str, sources: tuple[str, ...], with_cuda: bool, verbose: bool):
    """Compile (if needed) and import one extension; see :func:`build`."""
    from torch.utils import cpp_extension

    env: dict[str, str] = {}  # set only while building
    arch = "cpu"
    if with_cuda:
        problem = cuda_toolkit_problem()
        if problem:
            raise KernelBuildError(f"{name}: cannot build the CUDA extension: {problem}")
        home = _cuda_home()[0]
        env["CUDA_HOME"] = home
        cpp_extension.CUDA_HOME = home  # torch reads it once, at import
        import torch

        arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
        if not arch and torch.cuda.is_available():
            arch = "%d.%d" % torch.cuda.get_device_capability()
        elif not arch:
            arch = DEFAULT_ARCH_WITHOUT_DEVICE  # no device to ask for its capability
        env["TORCH_CUDA_ARCH_LIST"] = arch  # explicit, so the cache key names what is compiled
    elif shutil.which(os.environ.get("CXX", "c++")) is None:
        raise KernelBuildError(f"{name}: no C++ compiler found (set CXX or install g++)")
    if shutil.which("ninja") is None and importlib.util.find_spec("ninja") is None:
        raise KernelBuildError(f"{name}: building the kernels needs ninja: pip install ninja (or clipstyle[cuda])")
    paths = [Path(s) for s in sources]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise KernelBuildError(f"{name}: missing sources: {', '.join(missing)}")
    cflags = CXX_FLAGS + (("-DCLIPSTYLE_WITH_CUDA",) if with_cuda else ())
    folder = cache_dir() / f"{name}-{_digest(paths, cflags + (NVCC_FLAGS if with_cuda else ()), arch)}"

    with _locked(folder.with_suffix(".lock")), _environ(env):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return cpp_extension.load(
                name=name,
                sources=[str(p) for p in paths],
                extra_cflags=list(cflags),
                extra_cuda_cflags=list(NVCC_FLAGS) if with_cuda else None,
                extra_include_paths=[str(KERNELS_DIR)],
                build_directory=str(folder),
                with_cuda=with_cuda,
                verbose=verbose,
            )
        except Exception as exc:  # compiler/linker failure or an unloadable .so
            detail = getattr(exc, "output", None) or str(exc)
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace")
            log = folder / "build.log"
            with contextlib.suppress(OSError):
                log.write_text(str(detail))
            raise KernelBuildError(f"{name}: build failed (full log: {log}):\n{_first_error_lines(str(detail))}") from exc


@functools.lru_cache(maxsize=None)
def _cached(name: str, sources: tuple[str, ...], with_cuda: bool, verbose: bool):
    try:
        return _load(name, sources, with_cuda, verbose), None
    except KernelBuildError as exc:
        return None, exc


def build(name: str, sources: list[str | Path], with_cuda: bool = True, verbose: bool = False):
    """Build (once per process, once per source version on disk) and import an extension.

    Args:
        name: module name, unique per op and variant (e.g. ``clipstyle_bias_act``).
        sources: C++/CUDA files; headers next to them take part in the cache key.
        with_cuda: compile the ``.cu`` files with nvcc and define ``CLIPSTYLE_WITH_CUDA``; ``False``
            builds the CPU-only variant of the same C++ (used by the tests to check the kernels'
            index arithmetic on a machine without a GPU).
        verbose: show the compiler's output.

    Returns:
        The imported extension module.

    Raises:
        KernelBuildError: toolkit missing or compilation failed (the same error again on later calls).
    """
    module, error = _cached(name, tuple(str(Path(s).resolve()) for s in sources), bool(with_cuda), bool(verbose))
    if error is not None:
        raise error
    return module
