"""``--compile``: ``torch.compile`` and ``channels_last`` for the generator and CLIP, where they pay.

Modes (:data:`COMPILE_MODES`):

* ``off`` — eager PyTorch, the default memory format.
* ``compile`` — ``nn.Module.compile`` (TorchInductor, in place: the module keeps its parameters and
  ``state_dict`` keys); the first call compiles, later calls with the same shapes reuse the code.
* ``channels-last`` — the module's 4-D parameters and buffers in ``torch.channels_last`` (NHWC: cuDNN's
  tensor-core convolutions prefer it); a convolution with a channels-last weight returns a channels-last
  output, so the activations follow from the first convolution on.
* ``both`` — the two together.
* ``auto`` — where it pays: ``compile`` on CUDA; ``off`` on the CPU, where compiling takes minutes.

``channels-last`` and ``both`` are refused on the CPU, where they would add nothing: there the generators
already run NHWC inside (StyleGAN2 from its constant input on, StyleGAN3's filtered layers; issue 22,
1.1–2× faster convolutions). The option once also put StyleGAN2's per-sample (grouped) weights in
channels-last, where oneDNN's one-thread backward gave a wrong gradient (the last ToRGB row, 0.076 against
a maximum of 0.30); the generator no longer uses grouped convolutions, and ``tests/test_modconv.py``
checks its NHWC gradient against float64 with one and two threads.

Parity: compiled and eager agree to float32 rounding (Inductor may reorder reductions); tests check it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from clipstyle.errors import UsageError
from clipstyle.optimize.precision import COMPILE_MODES

__all__ = ["COMPILE_MODES", "CompileInfo", "maybe_compile", "resolve_compile", "warm_up"]


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
        UsageError: an unknown mode; ``channels-last``/``both`` on the CPU.
    """
    if device is None:
        first = next(iter(module.parameters()), None)
        first = first if first is not None else next(iter(module.buffers()), None)
        device = first.device if first is not None else "cpu"
    resolved = resolve_compile(mode, device)
    if resolved in ("channels-last", "both") and torch.device(device).type == "cpu":
        raise UsageError(f"--compile {resolved} is not offered on the CPU (the generators already run "
                         "channels-last there); use off or compile")
    channels_last = resolved in ("channels-last", "both")
    compiled = resolved in ("compile", "both")
    if channels_last:
        module.to(memory_format=torch.channels_last)
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
