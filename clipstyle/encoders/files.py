"""Reading encoder / identity weight files safely: through the one budgeted torch door
(:func:`clipstyle.generator.formats.torch_archive.load_torch`: every pickle dry-run, then
``torch.load(weights_only=True)``, mapped to the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipstyle.generator.formats.common import CheckpointError

__all__ = ["WeightsFileError", "read_torch_file"]


class WeightsFileError(CheckpointError):
    """An encoder or identity weights file that is missing, unsafe or not the network asked for (one line)."""


def read_torch_file(path: str | Path, what: str) -> dict[str, Any]:
    """The top-level dict of a torch file (zip or legacy), tensors on the CPU (``cuda:0``-tagged storages are
    mapped), read through the budgeted torch door (every pickle dry-run, then ``weights_only=True``) so no code
    from the file runs and a small file cannot allocate gigabytes.

    Args:
        path: the file.
        what: how to name it in messages (``"e4e checkpoint"``…).

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: its pickle names a global outside torch's weights-only allow-list (nothing ran).
        CheckpointError: truncated, corrupt, or not a dict.
    """
    from clipstyle.generator.formats.rosinality import load_rosinality_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such {what}: {path}")
    try:
        return load_rosinality_checkpoint(path)
    except CheckpointError as exc:
        if "not a rosinality checkpoint dict" in str(exc):
            raise WeightsFileError(f"{path.name} is not a {what} (it holds no dict of tensors)") from None
        raise
