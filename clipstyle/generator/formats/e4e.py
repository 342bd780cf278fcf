"""The StyleGAN2 decoder inside an e4e / pSp checkpoint (Tov et al. 2021; Richardson et al. 2021).

Layout: ``{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg': [n_styles, w_dim] or [w_dim], 'opts': dict}``.
``decoder.*`` is a rosinality StyleGAN2 generator state dict, so it is read by
:func:`~clipstyle.generator.formats.rosinality.generator_from_rosinality`. ``latent_avg`` becomes ``w_avg``
when its rows are one repeated vector (the released checkpoints); otherwise (a fine-tuned average with
distinct rows) ``w_avg`` is the seeded mean of mapped z, as for rosinality files without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from clipstyle.generator.formats.common import CheckpointError

__all__ = ["generator_from_e4e", "is_e4e_checkpoint"]


def is_e4e_checkpoint(ckpt: Any) -> bool:
    """Whether a loaded torch file is an e4e/pSp checkpoint (a ``state_dict`` with ``encoder.*`` and
    ``decoder.*`` tensors)."""
    state = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        return False
    keys = [str(k) for k in state]
    return any(k.startswith("encoder.") for k in keys) and any(k.startswith("decoder.") for k in keys)


def generator_from_e4e(ckpt: Mapping[str, Any]) -> Any:
    """The decoder of an e4e checkpoint as our StyleGAN2 generator (float32, CPU, eval, frozen).

    Raises:
        CheckpointError: not an e4e checkpoint, or its decoder is not a rosinality generator.
    """
    from clipstyle.generator.formats.rosinality import generator_from_rosinality

    if not is_e4e_checkpoint(ckpt):
        raise CheckpointError("not an e4e checkpoint: no state_dict with encoder.* and decoder.* tensors")
    state = {k[len("decoder."):]: v for k, v in ckpt["state_dict"].items() if str(k).startswith("decoder.")}
    avg = ckpt.get("latent_avg")
    rows = avg.reshape(-1, avg.shape[-1]) if torch.is_tensor(avg) and avg.ndim >= 1 else None
    same = rows is not None and bool(torch.equal(rows, rows[:1].expand_as(rows)))
    return generator_from_rosinality({"g_ema": state, "latent_avg": rows[0]} if same else state)
