"""``load_generator``: one call for every checkpoint a user has, recognised by content.

Supported (detected from the bytes, never from the file name):

* clipstyle's own ``.safetensors`` (weights + architecture JSON in the header) — fastest, safest;
* NVIDIA stylegan2-ada-pytorch / stylegan3 pickles (``G_ema`` of a snapshot);
* the original TensorFlow StyleGAN2 pickles (``Gs`` of a ``(G, D, Gs)`` tuple), read without TensorFlow;
* rosinality ``.pt`` files (``g_ema`` + ``latent_avg``, or a training checkpoint), as used by e4e,
  StyleCLIP and StyleGAN-NADA.

Pickles are read with an allow-list (:mod:`.safe_pickle`), torch archives with
``torch.load(weights_only=True)``: no code from a file ever runs.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import torch

from clipstyle.generator.base import Generator, SourceInfo
from clipstyle.generator.formats.common import CheckpointError
from clipstyle.generator.formats.nvidia import generator_from_nvidia
from clipstyle.generator.formats.safe_pickle import (
    CorruptPickleError,
    TFNetworkStandIn,
    UnsafePickleError,
    safe_load_pickle,
)

SUPPORTED = (
    "clipstyle .safetensors, NVIDIA stylegan2-ada-pytorch/stylegan3 .pkl, "
    "TensorFlow StyleGAN2 .pkl, rosinality stylegan2-pytorch .pt, e4e .pt (decoder)"
)
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def sniff_format(head: bytes) -> str:
    """Guess a checkpoint's container from its first bytes: ``safetensors`` | ``zip`` | ``pickle`` | ``unknown``."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "unknown"


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(sorted(str(k) for k in obj)[:8])
        return f"a dict with keys {keys or '(none)'}"
    return f"a {type(obj).__name__}"


def read_generator_file(path: str | Path) -> Generator:
    """Read a local checkpoint file into a float32 CPU generator in eval mode, weights frozen.

    Raises:
        CheckpointError: the file is not a network we know (the message says what was found and
            lists the supported formats), or is truncated/corrupt.
        UnsafePickleError: the pickle names a global outside the allow-list (nothing ran).
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    # Building a network draws its initial weights from torch's global RNG before the checkpoint's
    # replace them; loading must not move the caller's random state.
    with torch.random.fork_rng(devices=[]):
        return _read_generator_file(path)


def _read_generator_file(path: Path) -> Generator:
    with open(path, "rb") as f:
        head = f.read(16)
    kind = sniff_format(head)
    if kind == "safetensors":
        from clipstyle.generator.formats.native import load_native

        G, fmt = load_native(path), "clipstyle-safetensors"
    elif kind == "zip":
        from clipstyle.generator.formats.rosinality import (
            generator_from_rosinality,
            load_rosinality_checkpoint,
        )

        ckpt = load_rosinality_checkpoint(path)
        from clipstyle.generator.formats.e4e import generator_from_e4e, is_e4e_checkpoint

        if is_e4e_checkpoint(ckpt):  # an e4e/pSp checkpoint: its StyleGAN2 decoder
            G, fmt = generator_from_e4e(ckpt), "e4e-decoder"
        else:
            G, fmt = generator_from_rosinality(ckpt), "rosinality"
    elif kind == "pickle":
        data = path.read_bytes()
        if data[2:3] == b"\x8a":  # a legacy (pre-zip) torch.save stream starts with the magic long
            try:
                is_legacy = safe_load_pickle(io.BytesIO(data)) == _LEGACY_TORCH_MAGIC
            except (UnsafePickleError, CorruptPickleError):
                is_legacy = False
            if is_legacy:
                from clipstyle.generator.formats.rosinality import (
                    generator_from_rosinality,
                    load_rosinality_checkpoint,
                )

                ckpt = load_rosinality_checkpoint(path)
                G, fmt = generator_from_rosinality(ckpt), "rosinality"
                G.source = SourceInfo(str(path), str(path), fmt)
                return G
        obj = safe_load_pickle(data)
        if isinstance(obj, tuple) and obj and all(isinstance(o, TFNetworkStandIn) for o in obj):
            from clipstyle.generator.formats.tensorflow import generator_from_tf

            G, fmt = generator_from_tf(obj), "tensorflow-stylegan2"
        elif isinstance(obj, TFNetworkStandIn):
            from clipstyle.generator.formats.tensorflow import generator_from_tf

            G, fmt = generator_from_tf(obj), "tensorflow-stylegan2"
        else:
            try:
                G = generator_from_nvidia(obj)
            except CheckpointError as exc:
                raise CheckpointError(f"{path.name}: {exc}; supported: {SUPPORTED}") from None
            fmt = "nvidia-" + G.kind
    else:
        raise CheckpointError(f"{path.name} is not a checkpoint clipstyle can read (starts with {head[:8]!r}); "
                              f"supported: {SUPPORTED}")
    G.source = SourceInfo(str(path), str(path), fmt)
    return G


def load_generator(source: str | Path, device: str | torch.device = "cpu", *, cache_dir: str | Path | None = None,
                   progress: bool = True) -> Generator:
    """Load a pretrained generator from an alias, a path, a ``file://`` or an ``https://`` URL.

    Args:
        source: alias (``ffhq``, ``metfaces``, ``sg3-ffhq-r``… see ``clipstyle networks``), a local path, or a URL.
            URLs are downloaded once into the cache (``$CLIPSTYLE_CACHE`` or the platform cache dir).
        device: where to put the generator.
        cache_dir: override the cache directory.
        progress: show a download progress bar.

    Returns:
        A :class:`~clipstyle.generator.base.Generator` in eval mode with ``requires_grad=False`` on every
        parameter; float32; ``G.source`` records where it came from.

    Raises:
        clipstyle.io.cache.DownloadError: offline or a dead URL (the message names the URL and ``--network PATH``).
        CheckpointError / UnsafePickleError: see :func:`read_generator_file`.
        ValueError: an unknown alias that is not a file either.
    """
    from clipstyle.generator.registry import resolve_network
    from clipstyle.io.cache import fetch

    source = str(source)
    location, display = resolve_network(source)
    path = fetch(location, cache_dir=cache_dir, progress=progress)
    G = read_generator_file(path)
    G.source = SourceInfo(display, str(path), G.source.format)
    return G.to(device)


def generator_meta(G: Generator) -> dict[str, Any]:
    """JSON-able description of a generator's architecture (for headers and ``run.json``)."""
    from dataclasses import asdict

    cfg = asdict(G.config)
    return json.loads(json.dumps(cfg))
