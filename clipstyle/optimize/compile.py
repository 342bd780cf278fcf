"""``--compile``: ``torch.compile`` and ``channels_last`` for the generator and CLIP, where they pay.

Modes (:data:`COMPILE_MODES`):

* ``off`` — eager PyTorch, the default memory format.
* ``compile`` — ``nn.Module.compile`` (TorchInductor, in place: the module keeps its parameters and
  ``state_dict`` keys); the first call compiles, later calls with the same shapes reuse the code.
* ``channels-last`` — the module's 4-D parameters and buffers, and the 4-D tensors it is called with, in
  ``torch.channels_last`` (NHWC: cuDNN's tensor-core convolutions prefer it).
* ``both`` — the two together.
* ``auto`` — where it pays: ``compile`` on CUDA; ``off`` on the CPU, where compiling takes minutes and
  channels-last was measured slower for the generator (benchmarks/README.md: the grouped modulated
  convolutions lose more than the depthwise filters gain).

Parity: compiled and eager agree to float32 rounding (Inductor may reorder reductions); tests check it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from clipstyle.errors import UsageError

__all__ = ["COMPILE_MODES", "CompileInfo", "maybe_compile", "resolve_compile", "warm_up"]

COMPILE_MODES = ("auto", "off", "compile", "channels-last", "both")


@dataclass(frozen=True)
class CompileInfo:
    """What :func:`maybe_compile` did: ``mode`` (resolved, never ``auto``), ``compiled``,
    ``channels_last``, and ``seconds`` of the first (compiling) call when :func:`warm_up` measured it."""

    mode: str
    compiled: bool
    channels_last: bool
    seconds: float | None = None


def resolve_compile(mode: str, device: torch.device | str) -> str:
    """``auto`` → ``compile`` on CUDA, ``off`` elsewhere; other modes as given.

    Raises:
        UsageError: not one of :data:`COMPILE_MODES`.
    """
    mode = str(mode).strip().lower().replace("_", "-")
    if mode not in COMPILE_MODES:
        raise UsageError(f"--compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "compile" if torch.device(device).type == "cuda" else "off"
    return mode


def _to_channels_last(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def maybe_compile(module: torch.nn.Module, mode: str = "auto", device: torch.device | str | None = None,
                  *, compile_mode: str | None = None) -> CompileInfo:
    """Apply ``mode`` to ``module`` in place (see the module docstring).

    Args:
        module: e.g. ``G.synthesis`` or ``guide.model.visual`` (any ``nn.Module``).
        mode: one of :data:`COMPILE_MODES`.
        device: for ``auto`` (default: the device of the module's first parameter or buffer).
        compile_mode: ``torch.compile``'s ``mode`` (``None``: its default; ``"max-autotune"`` …).

    Returns:
        :class:`CompileInfo` (``seconds`` is ``None``: compiling happens at the first call; time it with
        :func:`warm_up`).

    Raises:
        UsageError: an unknown mode.
    """
    if device is None:
        first = next(iter(module.parameters()), None) or next(iter(module.buffers()), None)
        device = first.device if first is not None else "cpu"
    resolved = resolve_compile(mode, device)
    channels_last = resolved in ("channels-last", "both")
    compiled = resolved in ("compile", "both")
    if channels_last:
        module.to(memory_format=torch.channels_last)
        module.register_forward_pre_hook(
            lambda _m, args, kwargs: (tuple(_to_channels_last(a) for a in args),
                                      {k: _to_channels_last(v) for k, v in kwargs.items()}),
            with_kwargs=True)
    if compiled:
        module.compile(mode=compile_mode, dynamic=False)
    return CompileInfo(mode=resolved, compiled=compiled, channels_last=channels_last)


def warm_up(info: CompileInfo, call: Callable[[], Any]) -> CompileInfo:
    """Run ``call`` once (e.g. a forward + backward at the run's shapes) and return ``info`` with the
    seconds it took — the compile time when ``info.compiled`` (CUDA work is synchronized first)."""
    t0 = time.perf_counter()
    call()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return CompileInfo(info.mode, info.compiled, info.channels_last, time.perf_counter() - t0)
