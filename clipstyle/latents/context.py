"""Latent files carry their context: the network, blend, truncation and noise maps they were made with.

Every command that reads a latent file should use what the file records unless the user said otherwise::

    from clipstyle.latents.context import read_context

    ctx = read_context("out/proj/latents.npz")               # or "latents.npz#2": the item is ignored here
    network = ctx.network_or(network_option, default="ffhq")  # the option wins when given (not None)
    blend = ctx.blend_or(blend_option)
    psi = ctx.truncation_or(truncation_option)                # 1.0 when neither says
    noise = ctx.noise_arrays()                                 # {buffer name: float32 array}, {} when none
    # tensors matched to a generator: clipstyle.inversion.noise.read_noise(ctx.path, G, list(ctx.noise_names))
    for line in ctx.notes(network=network_option, blend=blend_option):  # what was taken from the file
        print(line, file=sys.stderr)

What is read (all writers of clipstyle record these in the ``meta`` JSON of the ``.npz``):

* ``meta["network"]``: the network source (alias, path or URL). After a run in a blend it is the base
  network A, and ``meta["blend"]`` (or ``meta["settings"]["blend"]``) the blend spec ``NETWORK@RES[:SMOOTH]``;
* ``meta["truncation_psi"]`` / ``meta["truncation_cutoff"]``: the truncation the ``ws`` themselves were made
  with (``generate``'s ``seedNNNN.npz``, ``invert-z``). The start truncation of an optimization
  (``meta["settings"]["truncation"]``) is *not* the latent's: the optimized ``ws`` are not truncated;
* noise maps ``noise_0`` … with their buffer names in ``meta["noise"]`` (projections of StyleGAN2 photos).

NVIDIA's ``projected_w.npz`` has no meta: everything is None/empty and the options or defaults apply.
This module reads files with NumPy only (no torch, no pickle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipstyle.io.files import check_input_path

__all__ = ["LatentContext", "NOISE_KEY", "read_context"]

#: Key prefix of the noise maps in a latent file (``noise_0``, ``noise_1`` …).
NOISE_KEY = "noise_"


@dataclass(frozen=True)
class LatentContext:
    """What a latent file records about how its ``ws`` were made (see the module doc).

    Attributes:
        path: the ``.npz`` file.
        network: recorded network source, or None.
        blend: recorded blend spec ``NETWORK@RES[:SMOOTH]``, or None.
        truncation_psi: truncation the ``ws`` were made with, or None.
        truncation_cutoff: rows from this index on were not truncated, or None.
        noise_names: buffer names of the recorded noise maps (``()`` when none).
        meta: the whole meta dict (``{}`` when none).
    """

    path: Path
    network: str | None = None
    blend: str | None = None
    truncation_psi: float | None = None
    truncation_cutoff: int | None = None
    noise_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def network_or(self, given: str | None, default: str | None = "ffhq") -> str | None:
        """The network to load: ``given`` when not None, else the recorded one, else ``default``."""
        return given if given is not None else (self.network or default)

    def blend_or(self, given: str | None) -> str | None:
        """The blend to render in: ``given`` when not None ('' = explicitly none), else the recorded one."""
        if given is not None:
            return given or None
        return self.blend

    def truncation_or(self, given: float | None, default: float = 1.0) -> float:
        """Truncation psi: ``given`` when not None, else the recorded one, else ``default`` (1 = none)."""
        if given is not None:
            return float(given)
        return float(self.truncation_psi) if self.truncation_psi is not None else float(default)

    def cutoff_or(self, given: int | None) -> int | None:
        """Truncation cutoff: ``given`` when not None, else the recorded one (None = all rows)."""
        return given if given is not None else self.truncation_cutoff

    def noise_arrays(self) -> dict[str, np.ndarray]:
        """The recorded noise maps as ``{buffer name: float32 array [1, 1, R, R]}`` (``{}`` when none or when
        the file's arrays do not match the recorded names)."""
        if not self.noise_names:
            return {}
        with np.load(self.path, allow_pickle=False) as data:
            keys = [f"{NOISE_KEY}{i}" for i in range(len(self.noise_names))]
            if not all(k in data.files for k in keys):
                return {}
            return {name: np.asarray(data[k], dtype=np.float32) for name, k in zip(self.noise_names, keys)}

    def notes(self, *, network: str | None = None, blend: str | None = None,
              truncation: float | None = None) -> list[str]:
        """One line per setting taken from the file rather than from the options (for the CLI to print)."""
        out = []
        if network is None and self.network:
            out.append(f"using the network recorded in {self.path.name}: {self.network} (--network overrides)")
        if blend is None and self.blend:
            out.append(f"rendering in the blend recorded in {self.path.name}: {self.blend} (--blend overrides)")
        if truncation is None and self.truncation_psi is not None and self.truncation_psi != 1.0:
            out.append(f"using the truncation recorded in {self.path.name}: {self.truncation_psi} "
                       "(--truncation overrides)")
        if self.noise_names:
            out.append(f"using the {len(self.noise_names)} noise maps recorded in {self.path.name}")
        return out


def _opt_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def read_context(source: str | Path) -> LatentContext:
    """The context recorded in a latent file.

    Args:
        source: a ``.npz`` path, optionally with an item suffix ``FILE#i`` (ignored: the context is the file's).

    Returns:
        :class:`LatentContext` (all fields None/empty for a file without meta, e.g. NVIDIA's ``projected_w.npz``).

    Raises:
        InputPathError: the file does not exist, is a folder, a FIFO or a device.
        LatentFileError: not a readable latent file.
    """
    text = str(source)
    path = Path(text.split("#", 1)[0] if "#" in text and not Path(text).exists() else text).expanduser()
    check_input_path(path, "latent file")  # missing, a folder, a FIFO, a device: said in one line
    from clipstyle.latents.latent import read_latent_meta

    meta = read_latent_meta(path)  # any layout (.npz, .npy, torch); {} when it records nothing
    settings = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    network = meta.get("network") or None
    blend = meta.get("blend") or settings.get("blend") or None
    names = meta.get("noise") or ()
    return LatentContext(
        path=path,
        network=str(network) if network else None,
        blend=str(blend) if blend else None,
        truncation_psi=_opt_float(meta.get("truncation_psi")),
        truncation_cutoff=_opt_int(meta.get("truncation_cutoff")),
        noise_names=tuple(str(n) for n in names) if isinstance(names, (list, tuple)) else (),
        meta=meta,
    )
