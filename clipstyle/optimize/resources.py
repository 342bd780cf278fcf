"""Resources before work: what a command will need, estimated from its numbers before anything runs.

``interpolate --frames 100000000``, ``"x" --batch 100000`` or ``generate --seeds 0-100000000 --grid`` used to run
until the kernel killed them (no message, nothing written). Each workflow now estimates the memory (and the
disk) its numbers ask for, compares it with what the machine has, and refuses with one line giving the estimate
and how to proceed (:class:`ResourceError`) before loading more or starting the work.

What the machine has: host memory from ``/proc/meminfo`` (``MemAvailable``) or ``os.sysconf`` (available pages),
tightened by a cgroup v2 memory limit when there is one; GPU memory from ``torch.cuda.mem_get_info``; disk from
``shutil.disk_usage``. No psutil.

The estimates (documented where computed) are deliberately rough upper-bound-ish figures: they exist to turn a
sure failure many orders of magnitude away into a message, not to cut close to the limit. A run within a factor
:data:`HEADROOM` of what is available passes. ``CLIPSTYLE_IGNORE_RESOURCES=1`` skips the refusal (the estimate
is still computed).

:class:`ResourceError` is a :class:`~clipstyle.errors.UserRuntimeError` (exit 1): the command line is well
formed, this machine cannot do that much at once; the message says what to reduce.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipstyle.errors import UserRuntimeError

__all__ = ["HEADROOM", "MAX_FRAMES", "MAX_SEEDS", "Estimate", "ResourceError", "check_count", "check_resources", "device_memory_available",
           "estimate_frames", "estimate_generate", "estimate_optimization", "host_memory_available",
           "synthesis_activation_elements"]

#: A request passes when its estimate is at most this fraction of what is available.
HEADROOM = 0.9
#: Bytes of float32.
_F32 = 4
#: Counts refused before anything is allocated for them (a list of 10⁸ seeds alone is gigabytes of Python ints).
MAX_SEEDS = 10_000_000
MAX_FRAMES = 1_000_000


class ResourceError(UserRuntimeError):
    """A command's numbers need more memory or disk than this machine has (one line: estimate, what is
    available, how to proceed). Exit code 1."""


@dataclass(frozen=True)
class Estimate:
    """What a run needs.

    Attributes:
        what: the request in words (``"interpolate: 100000000 frames of 1024²"``).
        host_bytes: peak host memory (bytes).
        device_bytes: peak accelerator memory (bytes; counted as host memory on a CPU device).
        disk_bytes: bytes written under the output folder.
        hint: how to proceed when it does not fit (the options to lower).
    """

    what: str
    host_bytes: int = 0
    device_bytes: int = 0
    disk_bytes: int = 0
    hint: str = ""


def check_count(option: str, value: int, cap: int, hint: str = "") -> None:
    """Refuse a count (seeds, frames …) over ``cap`` before anything is allocated for it.

    Raises:
        ResourceError: one line naming the option, the count and the cap.
    """
    if value > cap:
        raise ResourceError(f"{option} asks for {value} items; at most {cap} are made in one run"
                            + (f"; {hint}" if hint else ""))


def _cgroup_limit() -> int | None:
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    if raw == "max" or not raw.isdigit():
        return None
    return max(int(raw) - used, 0)


def host_memory_available() -> int | None:
    """Bytes of host memory available to this process now (None when the OS does not say)."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    limit = _cgroup_limit()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    return avail


def device_memory_available(device: Any) -> int | None:
    """Free bytes of a CUDA device (``torch.cuda.mem_get_info``); None for CPU/MPS or when unknown."""
    if not str(device).startswith("cuda"):
        return None
    try:
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    except Exception:  # noqa: BLE001 - no driver, no device: the run itself will say
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_resources(estimate: Estimate, device: Any = "cpu", outdir: str | os.PathLike[str] | None = None) -> None:
    """Refuse ``estimate`` when it does not fit the machine (host memory, the device's memory, the disk of ``outdir``).

    Raises:
        ResourceError: one line: what was asked, the estimate, what is available, ``estimate.hint``.
    """
    if os.environ.get("CLIPSTYLE_IGNORE_RESOURCES", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    on_gpu = str(device).startswith("cuda")
    host_need = estimate.host_bytes + (0 if on_gpu else estimate.device_bytes)
    tail = f"; {estimate.hint}" if estimate.hint else ""
    tail += " (CLIPSTYLE_IGNORE_RESOURCES=1 skips this check)"
    host = host_memory_available()
    if host is not None and host_need > HEADROOM * host:
        raise ResourceError(f"{estimate.what} needs about {_gb(host_need)} of memory; this machine has "
                            f"{_gb(host)} available{tail}")
    if on_gpu:
        free = device_memory_available(device)
        if free is not None and estimate.device_bytes > HEADROOM * free:
            raise ResourceError(f"{estimate.what} needs about {_gb(estimate.device_bytes)} on {device}; it has "
                                f"{_gb(free)} free{tail}")
    if outdir is not None and estimate.disk_bytes:
        probe = Path(outdir).expanduser().absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            disk = shutil.disk_usage(probe).free
        except OSError:
            disk = None
        if disk is not None and estimate.disk_bytes > HEADROOM * disk:
            raise ResourceError(f"{estimate.what} writes about {_gb(estimate.disk_bytes)}; {probe} has {_gb(disk)} "
                                f"free{tail}")


def synthesis_activation_elements(G: Any) -> int:
    """Elements of the feature maps one image's synthesis computes (a StyleGAN1/2 block: two convolutions of
    ``channels × res²``; a StyleGAN3 layer: ``out_channels × out_size²`` times its up-sampling factor², the
    size of its intermediate), read from ``G.config`` (or an object with its fields)."""
    cfg = getattr(G, "config", G)
    layers = getattr(cfg, "layers", None)
    if layers:
        return sum(int(l.out_channels) * int(l.out_size[0]) * int(l.out_size[1]) * max(int(l.up_factor), 1) ** 2
                   for l in layers)
    chans = tuple(getattr(cfg, "channels", ()) or ())
    return sum(2 * int(c) * (4 << i) ** 2 for i, c in enumerate(chans)) + 3 * int(getattr(cfg, "img_resolution", 0)) ** 2


def _image_bytes(G: Any) -> int:
    cfg = getattr(G, "config", G)
    res = int(getattr(cfg, "img_resolution", 0))
    return res * res * int(getattr(cfg, "img_channels", 3) or 3)


def _res(G: Any) -> int:
    return int(getattr(getattr(G, "config", G), "img_resolution", 0))


def estimate_frames(what: str, frames: int, G: Any, *, chunk: int = 8, encoded: bool = True) -> Estimate:
    """Workflows that render ``frames`` images and keep them (interpolate, styleblocks, direction apply):
    the uint8 frames, a second copy while a GIF/MP4 is encoded (``encoded``), and one chunk of float32 images
    and feature maps on the device.
    """
    img = _image_bytes(G)
    held = frames * img * (2 if encoded else 1)
    device = chunk * (synthesis_activation_elements(G) + 3 * _res(G) ** 2) * _F32
    return Estimate(f"{what}: {frames} frames of {_res(G)}²", host_bytes=held, device_bytes=device,
                    disk_bytes=frames * img // 2,
                    hint="use fewer --frames (or fewer keyframes/blocks), or a smaller network")


def estimate_generate(seeds: int, G: Any, *, grid: bool = False) -> Estimate:
    """``generate``: images are streamed to disk one at a time, so memory holds each seed's ``ws``/``z`` and,
    with ``--grid``, every image for the grid; the disk holds a PNG (about half the raw size) and an ``.npz``
    per seed."""
    cfg = getattr(G, "config", G)
    num_ws = int(getattr(G, "num_ws", 0) or 0)
    w_dim, z_dim = int(getattr(cfg, "w_dim", 512)), int(getattr(cfg, "z_dim", 512))
    per_seed = (num_ws * w_dim + z_dim) * _F32
    img = _image_bytes(G)
    host = seeds * per_seed + (seeds * img * 2 if grid else 0)
    device = (synthesis_activation_elements(G) + 3 * _res(G) ** 2) * _F32
    disk = seeds * (img // 2 + per_seed + 4096) + (seeds * img // 2 if grid else 0)
    return Estimate(f"generate: {seeds} seeds of {_res(G)}²" + (" with a grid" if grid else ""), host_bytes=host,
                    device_bytes=device, disk_bytes=disk,
                    hint="use fewer --seeds" + (" or leave out --grid" if grid else "") + ", or split the range")


def estimate_optimization(what: str, batch: int, G: Any, *, cutouts: int = 0, clip_input: int = 224,
                          clip_width: int = 768) -> Estimate:
    """An optimization of ``batch`` images (text, edit, directions): the feature maps of the synthesis kept for
    the backward pass (about 12 float32 values per element: outputs, activations, noise, gradients), plus CLIP's
    on ``max(cutouts, 1)`` views of each image (a transformer of ``clip_width`` on ``(clip_input/32)²`` tokens, 12
    layers, about 30 values per token and channel with gradients), plus the images themselves.
    """
    views = batch * max(int(cutouts), 1)
    synth = batch * synthesis_activation_elements(G) * 12 * _F32
    clip = views * ((clip_input // 32) ** 2 + 1) * clip_width * 12 * 30 * _F32 + views * 3 * clip_input ** 2 * _F32
    return Estimate(f"{what}: a batch of {batch} at {_res(G)}²" + (f" with {cutouts} cutouts" if cutouts else ""),
                    host_bytes=batch * _image_bytes(G) * 4, device_bytes=synth + clip,
                    hint="use a smaller --batch (or fewer --cutouts), or a GPU with more memory")
