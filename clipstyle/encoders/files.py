"""Reading encoder / identity weight files safely (``torch.load(weights_only=True)``, mapped to the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipstyle.generator.formats.common import CheckpointError

__all__ = ["WeightsFileError", "read_torch_file"]


class WeightsFileError(CheckpointError):
    """An encoder or identity weights file that is missing, unsafe or not the network asked for (one line)."""


def _generator_keys(data: dict) -> bool:
    """A rosinality StyleGAN2 checkpoint (``g_ema``) or its bare generator state dict (``style.1.weight``)."""
    return "g_ema" in data or "style.1.weight" in data


def _what_else(path: Path, head: bytes) -> str:
    """What a file that is no torch archive is, for the message: a generator the network loader reads, an
    image, or just its container."""
    from clipstyle.generator.loader import read_generator_file, sniff_format

    kind = sniff_format(head)
    if kind in ("pickle", "safetensors"):
        try:
            read_generator_file(path)  # the safe readers: nothing from the file runs
        except CheckpointError:
            return "a Python pickle" if kind == "pickle" else "a safetensors file"
        return "a StyleGAN generator checkpoint"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8"):
        return "a JPEG image"
    return "not a torch file"


def read_torch_file(path: str | Path, what: str) -> dict[str, Any]:
    """The top-level dict of a torch file (zip or legacy), tensors on the CPU (``cuda:0``-tagged storages are
    mapped), read with ``weights_only=True`` so no code from the file runs.

    A file that is something else says what it is, by content: ``X is a StyleGAN generator checkpoint, not an
    e4e checkpoint`` (an NVIDIA pickle, a clipstyle ``.safetensors`` or a rosinality ``g_ema`` dict), an image…

    Args:
        path: the file.
        what: how to name it in messages (``"e4e checkpoint"``…).

    Raises:
        InputPathError: missing, a folder, a FIFO, a device, unreadable (a usage error).
        WeightsFileError: a generator checkpoint, an image, a pickle or anything else that is no torch
            archive, or a torch file that does not hold a dict.
        UnsafePickleError: its pickle names a global outside torch's weights-only allow-list (nothing ran).
        CheckpointError: truncated or corrupt.
    """
    from clipstyle.generator.formats.torch_archive import load_torch_archive
    from clipstyle.generator.loader import sniff_format
    from clipstyle.io.files import check_input_path

    path = check_input_path(path, what)
    with open(path, "rb") as f:
        head = f.read(16)
    legacy_torch = head[:1] == b"\x80" and head[2:3] == b"\x8a"  # torch.save's pickled magic number first
    if sniff_format(head) != "zip" and not legacy_torch:
        raise WeightsFileError(f"{path.name} is {_what_else(path, head)}, not {_article(what)} {what}")
    data = load_torch_archive(path)
    if not isinstance(data, dict):
        raise WeightsFileError(f"{path.name} is not {_article(what)} {what} (it holds a {type(data).__name__}, "
                               "not a dict of tensors)")
    if _generator_keys(data):
        raise WeightsFileError(f"{path.name} is a StyleGAN generator checkpoint, not {_article(what)} {what}")
    return data


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"
