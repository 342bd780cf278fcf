"""What the pipelines share: loading the generator and CLIP once, labels, noise modes, seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clipstyle.latents.constraints import SpecError

__all__ = ["NOISE_MODES", "check_noise_mode", "labels", "load_network", "load_guide", "parse_seeds", "pick_device",
           "latent_file_of", "read_latent_meta", "network_for_latents"]

NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode: str) -> str:
    """``noise_mode`` if it is one of :data:`NOISE_MODES`.

    Raises:
        SpecError: any other value.
    """
    if noise_mode not in NOISE_MODES:
        raise SpecError(f"--noise-mode must be const, random or none, got {noise_mode!r}")
    return noise_mode


def labels(c_dim: int, class_idx: "int | str | None", n: int, device: Any, label_scale: float = 1.0) -> torch.Tensor:
    """Labels ``c`` float32 ``[n, c_dim]`` from ``--class`` (``[n, 0]`` for unconditional networks): K, several
    at once K1,K2,… (sum of one-hots), ``@S`` scale, or a ``.npy`` vector
    (:func:`clipstyle.latents.labels.parse_labels`).

    Raises:
        LabelError: ``class_idx`` given to an unconditional network, missing for a conditional one, out of
            ``0 … c_dim-1``, or malformed.
    """
    from clipstyle.latents.labels import label_tensor

    return label_tensor(c_dim, class_idx, n, device, label_scale)


def pick_device(device: str, G: Any = None) -> str:
    """The run's device: ``device`` resolved (:func:`~clipstyle.optimize.devices.resolve_device`), except
    that ``auto`` with a given ``G`` means G's own device (a caller's model is never moved by ``auto``).

    Raises:
        DeviceError: an unknown or absent device.
    """
    from clipstyle.optimize.devices import resolve_device

    if G is not None and str(device).strip().lower() == "auto":
        return str(G.w_avg.device)
    return resolve_device(device)


def load_network(network: str, device: str, blend: str | None = None, *, G: Any = None,
                 progress: bool = True) -> Any:
    """The generator of a run: ``G`` when given (moved to ``device`` in place, as ``nn.Module.to`` does; a no-op
    when it is there already), else ``load_generator(network)``;
    with ``blend`` (``NETWORK@RES[:SMOOTH]``) the blended network built on it.

    Raises:
        FileNotFoundError / DownloadError / CheckpointError: see :func:`clipstyle.generator.load_generator`.
        SpecError: a malformed ``blend``.
    """
    from clipstyle.generator import load_generator

    G = load_generator(network, device=device, progress=progress) if G is None else G.to(device)
    if blend:
        from clipstyle.latents.constraints import blend_from_spec

        G = blend_from_spec(G, blend, device, progress=progress)
    return G


def load_guide(clip_model: str, clip_pretrained: str, device: str, guide: Any = None) -> Any:
    """The CLIP model: ``guide`` when given, else ``CLIPGuide(clip_model, clip_pretrained)`` on ``device``
    (``clip_pretrained="none"``: random weights, for tests)."""
    if guide is not None:
        return guide
    from clipstyle.guidance import CLIPGuide

    return CLIPGuide(clip_model, None if str(clip_pretrained).lower() == "none" else clip_pretrained, device=device)


def parse_seeds(spec: str) -> list[int]:
    """``"0-7,12"`` → ``[0, 1, …, 7, 12]`` (seeds in 0 … 2³²−1).

    Raises:
        SpecError: a malformed or out-of-range item.
    """
    seeds: list[int] = []
    for item in str(spec).split(","):
        item = item.strip()
        try:
            if "-" in item[1:]:
                a, b = item.split("-", 1)
                lo, hi = int(a), int(b)
                if lo > hi:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise SpecError(f"bad seed {item!r} in --seeds {spec!r}: use e.g. 0-7,12") from None
    if any(s < 0 or s >= 2**32 for s in seeds):
        raise SpecError("seeds must be in 0 … 2**32-1")
    return seeds


def latent_file_of(spec: str) -> Path | None:
    """The latent file a one-item source spec names (``face.npz``, ``face.npz#1`` → ``face.npz``), or None for
    seeds, seed ranges and lists (see :func:`clipstyle.latents.constraints.parse_source`)."""
    import re

    item = str(spec).strip()
    if "," in item or re.match(r"^\d+(@[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)?$|^\d+-\d+$", item):
        return None
    m = re.match(r"^(.*)#(\d+)$", item)
    if m and not Path(item).is_file():
        item = m.group(1)
    return Path(item)


def read_latent_meta(path: Any) -> dict:
    """The JSON ``meta`` of a latent file of any layout (``{}`` when it has none). Read before the network it
    names is loaded, so a bad file is named here (never reported as the failed download of a default network).

    Raises:
        InputPathError / LatentFileError: see :func:`clipstyle.latents.latent.read_latent_meta`.
    """
    from clipstyle.latents.latent import read_latent_meta as read_meta

    return read_meta(path)


def network_for_latents(path: Path | None, network: str | None, meta: dict | None = None) -> str:
    """The network a latent file is rendered with unless told otherwise — the one rule of every command that
    reads latents: ``network`` when given; else the pivotal-tuning generator the file names
    (``meta['generator']``, relative to the file); else the network its meta records; else ``ffhq``. The file
    is read (and checked as a latent) first, so a bad file is named before any network loads.

    Raises:
        InputPathError / LatentFileError: a missing or bad latent file; a file that names a tuned generator
            that is missing (pass ``--network`` to render it with another network).
    """
    if path is None:
        return network or "ffhq"
    meta = read_latent_meta(path) if meta is None else meta  # a bad file is named before any network loads
    if network:
        return network
    tuned = meta.get("generator")
    if tuned:
        tuned_path = Path(tuned) if Path(tuned).is_absolute() else Path(path).parent / tuned
        if tuned_path.is_file():
            return str(tuned_path)
        from clipstyle.latents import LatentFileError

        raise LatentFileError(f"{path} names the tuned generator {tuned}, which is missing; pass --network to "
                              f"render it with another network")
    return str(meta.get("network") or "ffhq")
