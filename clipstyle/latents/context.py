"""Latent files carry their context: the network, blend, truncation and noise maps they were made with.

Every command that reads a latent file should use what the file records unless the user said otherwise::

    from clipstyle.latents.context import read_context

    ctx = read_context("out/proj/latents.npz")               # or "latents.npz#2": the item is ignored here
    network = ctx.network_or(network_option)  # the option wins; else latents.source's one rule
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

A network adapted from the recorded one (``clipstyle adapt``) shares its latent space: :meth:`LatentContext.relation`
recognises it through the ``base_sha256`` (and ``lineage``) its provenance records, so the file renders on the
child exactly as on its base.
This module reads files with NumPy only (no torch, no pickle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipstyle.io.files import check_input_path

__all__ = ["LatentContext", "NOISE_KEY", "network_sha256", "read_context"]

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

    def network_or(self, given: str | None) -> str:
        """The network to load, by the one rule (:func:`clipstyle.latents.source.network_for_latents`).

        Raises:
            NetworkSourceError: a missing tuned generator, a recorded URL or unknown network.
        """
        from clipstyle.latents.source import network_for_latents

        return network_for_latents(self.path, given, self.meta)

    def blend_or(self, given: str | None) -> str | None:
        """The blend to render in: ``given`` when not None ('' = explicitly none), else the recorded one with its
        network checked by the same rule (:func:`clipstyle.latents.source.blend_for_latents`)."""
        from clipstyle.latents.source import blend_for_latents

        return blend_for_latents(self.path, given, self.meta)

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
        from clipstyle.io.arrays import ArrayFileError, read_npz
        from clipstyle.latents.latent import LatentFileError

        try:
            data = read_npz(self.path)  # budgeted: members checked, then read one at a time
        except ArrayFileError as exc:
            raise LatentFileError(str(exc)) from None
        keys = [f"{NOISE_KEY}{i}" for i in range(len(self.noise_names))]
        if not all(k in data for k in keys):
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


    def relation(self, network: str | None, provenance: dict[str, Any] | None = None) -> str:
        """How the network a file is rendered on relates to the one it records.

        Args:
            network: the network to render on (alias, path or URL), or None for the recorded one.
            provenance: that network's provenance (:func:`clipstyle.generator.formats.native.read_provenance`),
                when it is an adapted network.

        Returns:
            ``"same"`` (no other network, the same source, or a file with the same sha256), ``"child"`` (adapted
            from the recorded network, directly or through other adapted networks: its provenance's
            ``base_sha256``/``lineage`` hold the recorded file's sha256, or its ``base`` names the same alias),
            ``"unknown"`` (the file records no network) or ``"other"``.
        """
        if network is None or network == self.network:
            return "same"
        if not self.network:
            return "unknown"
        recorded = network_sha256(self.network)
        if recorded is not None and recorded == network_sha256(network):
            return "same"
        if provenance:
            hashes = {str(h) for h in (provenance.get("lineage") or []) if h}
            hashes.add(str(provenance.get("base_sha256") or ""))
            if recorded is not None and recorded in hashes:
                return "child"
            if recorded is None and str(provenance.get("base") or "") == self.network:
                return "child"  # an alias whose file is not here to hash: the names agree
        return "other"


def network_sha256(source: str) -> str | None:
    """SHA-256 (hex) of the file a network source names: a local path, or an alias/URL already in the download
    cache (nothing is downloaded); None when there is no such file here."""
    from clipstyle.io.cache import cached_path_for, is_url, sha256_file

    path = Path(str(source)).expanduser()
    if not path.is_file():
        from clipstyle.generator.registry import get_pretrained

        entry = get_pretrained(str(source))
        url = entry.url if entry is not None else str(source) if is_url(str(source)) else None
        if url is None or url.startswith("file://"):
            path = Path(url[len("file://"):]) if url else path
        else:
            path = cached_path_for(url)
    if not path.is_file():
        return None
    return sha256_file(path)


def _opt_float(value: Any) -> float | None:
    try:
        out = None if value is None else float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if out is not None and not math.isfinite(out):  # a NaN truncation would make every image black
        from clipstyle.latents.latent import LatentFileError

        raise LatentFileError(f"the latent file records a truncation of {out}; pass --truncation")
    return out


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
