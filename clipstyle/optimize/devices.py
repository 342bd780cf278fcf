"""Which torch device a run uses: ``auto`` → CUDA, else Apple's MPS, else the CPU.

MPS (Apple GPUs) runs the PyTorch reference kernels (the CUDA extensions are CUDA-only, see
:mod:`clipstyle.kernels`); it is accepted and chosen by ``auto`` but untested here (no Apple machine).
"""

from __future__ import annotations

from clipstyle.errors import UsageError

__all__ = ["DeviceError", "DEVICES", "resolve_device", "mps_available"]

#: The values ``--device`` takes (``cuda:N`` is accepted too).
DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(UsageError):
    """A device that was asked for but is not there, or an unknown device name (one-line message)."""


def mps_available() -> bool:
    """Whether torch has a usable MPS (Apple GPU) backend."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``mps`` when available, else ``cpu``.

    ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are returned as given (lower case) once checked.

    Raises:
        DeviceError: ``cuda``/``mps`` without such a device, or a name that is none of the above.
    """
    import torch

    device = str(device).strip().lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_available() else "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        return device
    if device == "mps":
        if not mps_available():
            raise DeviceError("--device mps was asked for but this torch has no MPS (Apple GPU) backend; "
                              "use --device cpu")
        return device
    if device == "cpu":
        return device
    raise DeviceError(f"--device must be auto, cpu, cuda or mps, got {device!r}")
