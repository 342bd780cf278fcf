"""Choice between the pure-PyTorch reference of an op and its CUDA build.

Every op in :mod:`clipstyle.kernels` takes ``impl="auto" | "ref" | "cuda"``. The environment
variable ``CLIPSTYLE_KERNELS`` (same values) overrides the argument, so a whole run can be pinned
to the reference without touching code. ``auto`` picks CUDA only when the tensor lives on a CUDA
device *and* the extension builds; otherwise the reference, with one warning per op and reason
per process (a CPU tensor is not a reason: the reference is the CPU implementation).

Only a genuine build failure (:class:`~clipstyle.kernels._build.KernelBuildError`: no toolkit, a
compiler error, an unloadable ``.so``) falls back to the reference. Any other exception raised while
loading an extension is a bug of clipstyle and propagates with its traceback.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Literal

import torch

from ._build import KernelBuildError

Impl = Literal["auto", "ref", "cuda"]
IMPLS = ("auto", "ref", "cuda")
_warned: set[tuple[str, str]] = set()


def _warn_once(op: str, reason: str) -> None:
    """Warn that ``op`` falls back to the reference, once per (op, reason) and process."""
    if (op, reason) in _warned:
        return
    _warned.add((op, reason))
    warnings.warn(f"{op}: {reason}; using the PyTorch reference", RuntimeWarning, stacklevel=4)


def reset_warnings() -> None:
    """Forget which fallbacks were already reported (for tests)."""
    _warned.clear()


def requested_impl(impl: str) -> str:
    """The implementation asked for, after the ``CLIPSTYLE_KERNELS`` override.

    Raises:
        ValueError: ``impl`` (or the environment variable) is not one of ``auto``, ``ref``, ``cuda``.
    """
    env = os.environ.get("CLIPSTYLE_KERNELS", "").strip().lower()
    choice = env or impl
    if choice not in IMPLS:
        source = "CLIPSTYLE_KERNELS" if env else "impl"
        raise ValueError(f"{source} must be one of {', '.join(IMPLS)}, got {choice!r}")
    return choice


def choose(op: str, impl: str, x: torch.Tensor, cuda_loader: Callable[[], object] | None) -> object | None:
    """Return the loaded CUDA extension to use for ``op``, or ``None`` for the reference.

    Args:
        op: name of the op, for messages.
        impl: ``auto`` | ``ref`` | ``cuda`` (overridden by ``CLIPSTYLE_KERNELS``).
        x: the op's main input; CUDA is only considered when ``x.is_cuda``.
        cuda_loader: builds/loads the extension on first call (raises
            :class:`~clipstyle.kernels._build.KernelBuildError` on a build failure); ``None`` when the
            op has no CUDA version yet.

    Raises:
        RuntimeError: ``impl="cuda"`` but the tensor is not on CUDA.
        KernelBuildError: ``impl="cuda"`` and the extension cannot be built (a ``RuntimeError`` too).
        Exception: anything else the loader raises (a bug) propagates unchanged.
    """
    choice = requested_impl(impl)
    if choice == "ref":
        return None
    if not x.is_cuda:
        if choice == "cuda":
            raise RuntimeError(f"{op}: impl='cuda' needs a CUDA tensor, got one on {x.device}")
        return None
    if cuda_loader is None:
        if choice == "cuda":
            raise RuntimeError(f"{op}: no CUDA implementation is available")
        _warn_once(op, "no CUDA implementation")
        return None
    try:
        return cuda_loader()
    except KernelBuildError as exc:  # a genuine build failure: reported, then the reference runs
        if choice == "cuda":
            raise KernelBuildError(f"{op}: CUDA extension unavailable: {exc}") from exc
        _warn_once(op, f"CUDA extension unavailable ({exc})")
        return None


def filters_in_float32(x: torch.Tensor) -> bool:
    """Whether the reference should run a FIR op (upfirdn2d, filtered_lrelu) on ``x`` in float32: on the CPU
    when ``x`` is 16-bit or autocast is on. oneDNN has no fast 16-bit depthwise convolution: a StyleGAN3-T
    step at 256² took 15 s with its filters in bf16 against 5 s in float32 on an AVX512-BF16 Xeon (issue 22),
    and a memory-bound filter gains nothing from 16-bit arithmetic anyway. The caller computes with
    autocast off on ``x.float()`` and returns ``x``'s dtype."""
    return x.device.type == "cpu" and (x.dtype in (torch.bfloat16, torch.float16)
                                       or torch.is_autocast_enabled("cpu"))
