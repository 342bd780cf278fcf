"""The memory layout open_clip's transformers run fastest in, with the same numbers.

open_clip builds its ViT and text transformers ``batch_first`` (activations ``[N, L, D]``), and
``nn.MultiheadAttention(batch_first=True)`` transposes them to ``[L, N, D]`` *views* before its input
projection. A linear layer on that non-contiguous 3-D view is computed as a batched matmul against the
weight expanded along ``L``; on the CPU the expanded weight is materialized (``[L, D, 3D]``, 177 MB per
ViT-B/32 layer in bf16) in the forward and again in the backward pass. Measured on a 2-core
AVX512-BF16 Xeon, ViT-B/32 forward + backward of 8 cutouts: float32 1.12 → 0.79 s, bf16 autocast
2.88 → 0.57 s with the switch below.

open_clip supports both layouts (its ``Transformer(batch_first=False)`` transposes once, contiguously,
to ``[L, N, D]``, and back at the end), so :func:`use_sequence_first` only flips that documented switch
on the built model; outputs agree to float32 rounding (~2e-6).
"""

from __future__ import annotations

from torch import nn

__all__ = ["use_sequence_first"]


def use_sequence_first(model: nn.Module) -> int:
    """Switch every open_clip ``Transformer`` in ``model`` whose blocks use ``nn.MultiheadAttention`` to
    the sequence-first layout (see the module docstring). Transformers with other blocks (open_clip's
    ``CustomResidualAttentionBlock`` requires batch-first) are left as they are. In place; idempotent.

    Returns:
        the number of transformers switched.
    """
    from open_clip.transformer import Transformer

    switched = 0
    for module in model.modules():
        if not isinstance(module, Transformer) or not getattr(module, "batch_first", False):
            continue
        attns = [getattr(block, "attn", None) for block in module.resblocks]
        if not attns or not all(isinstance(a, nn.MultiheadAttention) and a.batch_first for a in attns):
            continue
        module.batch_first = False
        for a in attns:
            a.batch_first = False
        switched += 1
    return switched
