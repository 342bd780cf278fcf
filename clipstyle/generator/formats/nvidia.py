"""Reader for NVIDIA's PyTorch network pickles (stylegan2-ada-pytorch and stylegan3 snapshots).

The pickle is read with :mod:`clipstyle.generator.formats.safe_pickle` (nothing from the file runs); the
``G_ema`` persistent object is then converted into our own generator by reading its constructor
arguments, its sub-modules' plain attributes and its tensors (the fixtures' README, §3, documents
that layout).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from clipstyle.generator.base import Generator
from clipstyle.generator.formats.budget import check_budget, check_fits_state, limits
from clipstyle.generator.formats.common import (
    CheckpointError,
    load_state_exact,
    safe_text,
)
from clipstyle.generator.formats.nvidia_sg3 import stylegan3_from_nvidia
from clipstyle.generator.formats.safe_pickle import PersistentObject
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator


def pick_g_ema(data: Any) -> PersistentObject:
    """The ``G_ema`` network of a snapshot dict (or a bare pickled generator)."""
    if isinstance(data, PersistentObject):
        return data
    if isinstance(data, dict):
        for key in ("G_ema", "Gs"):
            if isinstance(data.get(key), PersistentObject):
                return data[key]
        found = ", ".join(safe_text(str(k), 40) for k in sorted(data, key=str)[:12]) or "nothing"
        raise CheckpointError(f"the pickle holds a dict without a G_ema network (keys: {found})")
    raise CheckpointError(f"the pickle holds a {type(data).__name__}, not an NVIDIA network snapshot")


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _separable_taps(f: torch.Tensor) -> tuple[float, ...]:
    """1-D taps of a stored (normalised, rank-1) 2-D resampling filter."""
    if f.ndim == 1:
        return tuple(float(t) for t in f)
    taps = f.sum(dim=0)
    if not torch.allclose(torch.outer(taps, taps) / taps.sum() ** 2 * f.sum(), f, atol=1e-7):
        raise CheckpointError("the resampling filter is not separable; unsupported")
    return tuple(float(t) for t in taps / taps.sum())


def stylegan2_config_from_nvidia(g: PersistentObject) -> StyleGAN2Config:
    """Derive a :class:`StyleGAN2Config` from a stylegan2-ada-pytorch ``Generator`` object.

    Reads tensor shapes and the sub-modules' plain attributes rather than trusting defaults
    (snapshots store only the constructor arguments that were passed).
    """
    kw = g.init_kwargs
    mapping, synthesis = g.child("mapping"), g.child("synthesis")
    raw_res = synthesis.attr("block_resolutions")
    if not isinstance(raw_res, (list, tuple)) or not raw_res or len(raw_res) > limits().max_layers:
        raise CheckpointError("SynthesisNetwork.block_resolutions is not a short list of resolutions")
    res_list = [int(r) for r in raw_res]
    if res_list != [2 ** k for k in range(2, 2 + len(res_list))]:
        raise CheckpointError(f"block_resolutions {res_list[:8]} are not 4, 8, 16, … in powers of two")
    blocks = [synthesis.child(f"b{r}") for r in res_list]
    channels = tuple(int(b.child("conv1").attr("weight").shape[0]) for b in blocks)
    fc_names = sorted((n for n in mapping.modules if re.fullmatch(r"fc\d{1,3}", n)), key=lambda n: int(n[2:]))
    if not fc_names or fc_names != [f"fc{i}" for i in range(len(fc_names))]:
        raise CheckpointError("the mapping network's layers are not fc0, fc1, …")
    fc0 = mapping.child(fc_names[0])
    embed = mapping.modules.get("embed")
    conv = blocks[0].child("conv1")
    first_filter = blocks[0].attr("resample_filter")
    cfg = StyleGAN2Config(
        z_dim=int(kw.get("z_dim", mapping.attr("z_dim"))),
        w_dim=int(kw.get("w_dim", mapping.attr("w_dim"))),
        c_dim=int(kw.get("c_dim", mapping.attr("c_dim") or 0)),
        img_resolution=int(kw.get("img_resolution", synthesis.attr("img_resolution"))),
        img_channels=int(kw.get("img_channels", synthesis.attr("img_channels"))),
        channels=channels,
        mapping_layers=len(fc_names),
        mapping_embed_features=int(embed.attr("weight").shape[0]) if isinstance(embed, PersistentObject) else None,
        mapping_layer_features=int(fc0.attr("weight").shape[0]) if len(fc_names) > 1 else None,
        mapping_activation=str(fc0.attr("activation", "lrelu")),
        mapping_lr_multiplier=float(fc0.attr("bias_gain", 0.01)),
        architecture=str(blocks[-1].attr("architecture", "skip")),
        conv_clamp=_float(conv.attr("conv_clamp")),
        num_fp16_res=sum(1 for b in blocks if b.attr("use_fp16")),
        resample_filter=_separable_taps(first_filter) if first_filter is not None else (1.0, 3.0, 3.0, 1.0),
        use_noise=bool(conv.attr("use_noise", True)),
        activation=str(conv.attr("activation", "lrelu")),
    )
    if cfg.img_resolution != res_list[-1]:
        raise CheckpointError(f"img_resolution {cfg.img_resolution} but the last block is {res_list[-1]}x{res_list[-1]}")
    check_budget(cfg, what="the stylegan2 network")
    return cfg


def stylegan2_from_nvidia(g: PersistentObject) -> StyleGAN2Generator:
    """Build our StyleGAN2 generator from a stylegan2-ada-pytorch ``G_ema`` object (float32, CPU, eval)."""
    cfg = stylegan2_config_from_nvidia(g)
    state = g.state_dict()
    # Every layer keeps a copy of its block's resampling filter; ours share the block's buffer.
    for key in [k for k in state if k.endswith(".resample_filter") and k.count(".") > 2]:
        block_key = key.rsplit(".", 2)[0] + ".resample_filter"
        if block_key in state and not torch.equal(state[key], state[block_key]):
            raise CheckpointError(f"{safe_text(key)} differs from its block's filter; unsupported")
        del state[key]
    check_fits_state(cfg, state, "the stylegan2 network")
    G = StyleGAN2Generator(cfg)
    load_state_exact(G, state)
    return G


def generator_from_nvidia(data: Any) -> Generator:
    """Convert an unpickled NVIDIA snapshot (or its ``G_ema``) into a StyleGAN2 or StyleGAN3 generator.

    The family is recognised from the synthesis network's children: StyleGAN3 has an ``input``
    (``SynthesisInput``) child and a ``layer_names`` list; StyleGAN2 has ``b4``, ``b8``, …
    """
    g = pick_g_ema(data)
    synthesis = g.modules.get("synthesis")
    if not isinstance(synthesis, PersistentObject) or not isinstance(g.modules.get("mapping"), PersistentObject):
        raise CheckpointError(f"the network object ({safe_text(g.class_name)}) has no mapping/synthesis networks")
    if "input" in synthesis.modules:
        return stylegan3_from_nvidia(g)
    if "b4" in synthesis.modules:
        return stylegan2_from_nvidia(g)
    raise CheckpointError("unrecognised synthesis network (neither StyleGAN2 nor StyleGAN3)")
