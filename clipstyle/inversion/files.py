"""Latent files with extra arrays (projection noise maps, per-row z) on top of :func:`clipstyle.latents.save_latents`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["add_arrays", "read_arrays"]


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles; members checked against the array budget and read one at a time,
    :func:`clipstyle.io.arrays.read_npz`)."""
    from clipstyle.io.arrays import read_npz

    return read_npz(path)


def add_arrays(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> Path:
    """Rewrite the latent file ``path`` (written by ``save_latents``) atomically with ``arrays`` added and
    its JSON ``meta`` updated by ``meta``. Existing keys of the same name are replaced; ``ws``/``w``/``meta``
    cannot be replaced this way.

    Raises:
        ValueError: an array is named ``ws``, ``w`` or ``meta``.
    """
    from clipstyle.io.files import atomic_save_npz

    reserved = {"ws", "w", "meta"} & set(arrays)
    if reserved:
        raise ValueError(f"add_arrays cannot replace {', '.join(sorted(reserved))}")
    current = read_arrays(path)
    old_meta: dict[str, Any] = {}
    if "meta" in current:
        try:
            old_meta = json.loads(str(current["meta"]))
        except ValueError:
            old_meta = {}
    old_meta.update(meta or {})
    current.update({k: np.asarray(v) for k, v in arrays.items()})
    current["meta"] = np.array(json.dumps(old_meta, default=str))
    return atomic_save_npz(path, **current)
