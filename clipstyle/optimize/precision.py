"""Numeric precision of the networks in an optimization: ``auto``, ``fp32``, ``tf32``, ``bf16``, ``fp16``.

What a precision covers: the *network forwards* — the generator's synthesis and the frozen critics
(CLIP's image tower, and LPIPS, e4e, ArcFace where their code asks :func:`model_autocast`). What stays
float32 always: the master latent, the optimizer state (Adam's moments), the loss terms' arithmetic and
their reduction (the critics return float32 embeddings; the loop computes the loss outside autocast).

* ``fp32`` — IEEE float32 everywhere, TF32 explicitly off on CUDA (cuDNN enables it by default).
* ``tf32`` — float32 tensors, TF32 tensor-core matmuls/convolutions (CUDA, compute capability ≥ 8.0);
  10-bit mantissa products accumulated in float32 (NVIDIA A100 whitepaper, 2020).
* ``bf16`` / ``fp16`` — ``torch.autocast`` with that dtype: matmuls and convolutions in 16 bits,
  accumulation and the ops autocast lists as unsafe in float32. ``fp16`` also scales the loss
  (``torch.amp.GradScaler``) so that small gradients do not underflow (Micikevicius et al. 2018,
  "Mixed Precision Training", §3.2). NVIDIA's StyleGAN2-ADA/3 run their top layers in fp16 with
  ``conv_clamp=256`` for the same reason (Karras et al. 2020, "Training GANs with limited data", App. D).
* ``auto`` — the fastest mode expected to be safe on the device (:func:`auto_candidates`): bf16 on CPUs
  with AVX512-BF16 or AMX and on CUDA GPUs with native bf16 (compute capability ≥ 8.0), else fp32.
  Whether a mode *is* safe for a network is measured by :mod:`clipstyle.optimize.precision_check`.

The API the pipelines use: :func:`resolve_precision` (what will run), :func:`autocast_context` (around the
generator), :func:`model_precision` (around the loss: enables :func:`model_autocast` in the critics).
Importing this module does not import torch (the torch-free settings can take :data:`PRECISIONS` from here).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from clipstyle.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "PrecisionError", "auto_candidates", "autocast_context", "autocast_dtype",
           "cpu_has_fast_bf16", "model_autocast", "model_precision", "model_synthesis", "resolve_precision"]

#: The values ``--precision`` takes.
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
#: Modes of ``--compile`` (:mod:`clipstyle.optimize.compile`), here so torch-free settings can name them.
COMPILE_MODES = ("auto", "off", "compile", "channels-last", "both")
_REDUCED = ("bf16", "fp16")  # the autocast modes


def _torch():
    import torch

    return torch

# The precision the critics' forwards run in, set by model_precision() for the duration of a loss call.
_MODEL_PRECISION: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "clipstyle_model_precision", default=None)


class PrecisionError(UsageError):
    """A precision that is unknown, cannot run on the device, or was refused for a network (exit code 2)."""


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively: the ``avx512_bf16`` or ``amx_bf16`` flag in
    ``/proc/cpuinfo`` (Linux), else torch's reported CPU capability (``AVX512_BF16``/``AMX``)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    try:
        capability = str(_torch().backends.cpu.get_cpu_capability()).upper()
    except (AttributeError, RuntimeError):
        return False
    return "BF16" in capability or "AMX" in capability


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    return _torch().cuda.get_device_capability(device)


def auto_candidates(device: torch.device | str) -> tuple[str, ...]:
    """The modes ``auto`` tries on ``device``, fastest first; ``fp32`` always ends the list.

    CUDA: ``bf16, tf32, fp32`` on compute capability ≥ 8.0 (Ampere and later), else ``fp32``.
    CPU: ``bf16, fp32`` with AVX512-BF16/AMX (:func:`cpu_has_fast_bf16`), else ``fp32``. MPS: ``fp32``.
    """
    device = _torch().device(device)
    if device.type == "cuda":
        return ("bf16", "tf32", "fp32") if _cuda_capability(device) >= (8, 0) else ("fp32",)
    if device.type == "cpu" and cpu_has_fast_bf16():
        return ("bf16", "fp32")
    return ("fp32",)


def resolve_precision(precision: str, device: torch.device | str, refused: tuple[str, ...] = ()) -> str:
    """The mode that will run for ``precision`` on ``device`` (never ``auto``).

    Args:
        precision: one of :data:`PRECISIONS`.
        device: the torch device of the run.
        refused: modes a safety check refused for this network (``auto`` skips them).

    Returns:
        ``fp32`` | ``tf32`` | ``bf16`` | ``fp16``.

    Raises:
        PrecisionError: an unknown name; ``tf32`` off CUDA or on a GPU older than Ampere; ``bf16`` on a
            CUDA GPU without bf16; ``bf16``/``fp16`` on a device autocast does not support; an explicit
            mode listed in ``refused``.
    """
    precision = str(precision).strip().lower()
    if precision not in PRECISIONS:
        raise PrecisionError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    torch = _torch()
    device = torch.device(device)
    if precision == "auto":
        return next(m for m in auto_candidates(device) if m not in refused or m == "fp32")
    if precision in refused:
        raise PrecisionError(f"--precision {precision} was refused for this network by its safety check; "
                             "use --precision fp32 or auto")
    if precision == "tf32":
        if device.type != "cuda":
            raise PrecisionError(f"--precision tf32 needs a CUDA GPU (TF32 is a tensor-core mode), not {device.type}; "
                                 "use fp32, bf16 or auto")
        if _cuda_capability(device) < (8, 0):
            raise PrecisionError("--precision tf32 needs a GPU of compute capability 8.0 or later (Ampere); "
                                 "use fp32 or auto")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise PrecisionError("--precision bf16: this GPU has no native bfloat16; use fp16, fp32 or auto")
    if precision in _REDUCED and device.type not in ("cuda", "cpu", "mps", "xpu"):
        raise PrecisionError(f"--precision {precision}: autocast does not support {device.type} devices")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``torch.bfloat16`` / ``torch.float16`` for ``bf16`` / ``fp16``; ``None`` for the float32 modes."""
    torch = _torch()
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """TF32 on (or off) for CUDA matmuls and cuDNN convolutions; the previous flags are restored."""
    torch = _torch()
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast_context(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context running the forwards inside it in ``precision`` (a resolved mode, not ``auto``).

    ``fp32``: nothing on CPU; TF32 off on CUDA. ``tf32``: TF32 on (CUDA). ``bf16``/``fp16``:
    ``torch.autocast(device.type, dtype)``. Tensors created inside keep their dtypes; outputs of
    autocast regions may be 16-bit (cast them with ``.float()`` before a loss).

    Raises:
        PrecisionError: ``auto`` or an unknown mode (resolve it first with :func:`resolve_precision`).
    """
    torch = _torch()
    device = torch.device(device)
    if precision not in PRECISIONS or precision == "auto":
        raise PrecisionError(f"autocast_context needs a resolved precision (fp32, tf32, bf16, fp16), got {precision!r}")
    if precision in _REDUCED:
        return torch.autocast(device.type, dtype=autocast_dtype(precision))
    if device.type == "cuda":
        return _tf32(precision == "tf32")
    return contextlib.nullcontext()


@contextlib.contextmanager
def model_precision(precision: str, device: torch.device | str) -> Iterator[None]:
    """Within this context, :func:`model_autocast` (called by the critics around their network forward)
    runs in ``precision``; the code around those forwards — the loss arithmetic — stays float32.
    ``fp32`` (or leaving the context) turns it off. Thread- and task-local (a ``contextvars`` variable)."""
    if precision not in PRECISIONS or precision == "auto":
        raise PrecisionError(f"model_precision needs a resolved precision, got {precision!r}")
    token = _MODEL_PRECISION.set((precision, _torch().device(device).type))
    try:
        yield
    finally:
        _MODEL_PRECISION.reset(token)


def model_autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context a critic (CLIP, LPIPS, e4e, ArcFace) puts around its network forward on ``device``.

    Outside :func:`model_precision`, or on another device type than the one it names, a no-op. The
    critic returns float32 (``.float()``) so that the loss stays in float32.
    """
    current = _MODEL_PRECISION.get()
    if current is None or current[1] != _torch().device(device).type:
        return contextlib.nullcontext()
    return autocast_context(current[0], device)


def model_synthesis(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
    """``G.synthesis(ws)`` inside :func:`model_autocast` (the precision :func:`model_precision` set, if any),
    returned as float32 ``[N, C, H, W]`` in about [-1, 1]. For generator forwards inside a loss or a training
    step (``clipstyle adapt``, pivotal tuning's locality term), where the loop's own autocast does not reach."""
    with model_autocast(ws.device):
        images = G.synthesis(ws, noise_mode=noise_mode)
    return images.float()
