"""Writing networks for other tools: the format comes from the file extension, and one we cannot write
is refused before anything is loaded.

=================  ===================================================================================
``.safetensors``   clipstyle's own format (:mod:`.native`): every family, bit-exact round trip
``.pt`` / ``.pth`` rosinality stylegan2-pytorch ``{'g_ema', 'latent_avg'}`` (:mod:`.rosinality_writer`):
                   unconditional StyleGAN2 'skip' networks; what StyleCLIP, e4e, StyleGAN-NADA load
=================  ===================================================================================

NVIDIA pickles (``.pkl``) cannot be written: they embed NVIDIA's source code.
Metadata never holds an absolute path of the user's machine: :func:`public_source` keeps a file's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipstyle.errors import UsageError
from clipstyle.generator.formats.common import CheckpointError, public_source

WRITABLE = {".safetensors": "clipstyle", ".pt": "rosinality", ".pth": "rosinality"}


class UnwritableFormatError(UsageError):
    """An output extension we cannot write (a usage error)."""


def output_format(path: str | Path) -> str:
    """``"clipstyle"`` | ``"rosinality"`` for an output path, from its extension.

    Raises:
        UnwritableFormatError: any other extension (names the ones we write).
    """
    suffix = Path(path).suffix.lower()
    fmt = WRITABLE.get(suffix)
    if fmt is None:
        why = " (NVIDIA pickles embed their source code; clipstyle writes none)" if suffix == ".pkl" else ""
        raise UnwritableFormatError(f"cannot write a network as {suffix or 'a file without extension'}{why}; "
                                    f"use .safetensors (clipstyle) or .pt (rosinality, StyleGAN2 only)")
    return fmt


def save_network(G: Any, path: str | Path, meta: dict[str, Any] | None = None) -> list[str]:
    """Write ``G`` to ``path`` in the format its extension names, atomically; returns notes (what was dropped).

    Raises:
        UnwritableFormatError: an extension we cannot write.
        CheckpointError: the format cannot hold this network (e.g. StyleGAN3 as rosinality .pt).
    """
    fmt = output_format(path)
    if fmt == "clipstyle":
        from clipstyle.generator.formats.native import save_native

        save_native(G, path, meta=meta)
        return []
    from clipstyle.generator.formats.rosinality_writer import save_rosinality

    return save_rosinality(G, path)


__all__ = ["WRITABLE", "CheckpointError", "UnwritableFormatError", "output_format", "public_source", "save_network"]
