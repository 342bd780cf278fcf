"""Reader for NVIDIA stylegan3 snapshots (``training.networks_stylegan3.Generator``, configs T and R).

The configuration is read from what the snapshot stores — each ``SynthesisLayer``'s plain attributes
(sizes, sampling rates, cutoffs, half-widths, factors, taps, padding, ``conv_kernel``, ``conv_clamp``,
``is_torgb`` …), the ``SynthesisInput``'s, ``SynthesisNetwork.output_scale``/``layer_names``, and tensor
shapes — never from constructor defaults, which the pickle does not record (fixtures README §3.4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clipstyle.generator.formats.common import CheckpointError, load_state_exact
from clipstyle.generator.formats.safe_pickle import PersistentObject
from clipstyle.generator.stylegan3 import (
    SG3LayerConfig,
    StyleGAN3Config,
    StyleGAN3Generator,
)

__all__ = ["stylegan3_config_from_nvidia", "stylegan3_from_nvidia"]


def _pair(v: Any) -> tuple[int, int]:
    """A stored size (int, NumPy scalar or ``[w, h]`` array) as ``(w, h)``."""
    vals = [int(t) for t in np.atleast_1d(np.asarray(v)).ravel()]
    if len(vals) not in (1, 2):
        raise CheckpointError(f"unexpected size value {v!r}")
    return (vals[0], vals[-1])


def _need(obj: PersistentObject, name: str) -> Any:
    value = obj.attr(name)
    if value is None:
        raise CheckpointError(f"{obj.class_name} lacks the attribute {name!r}; not a stylegan3 snapshot we can read")
    return value


def _layer_config(layer: PersistentObject, name: str) -> SG3LayerConfig:
    weight = _need(layer, "weight")
    clamp = layer.attr("conv_clamp")
    cfg = SG3LayerConfig(
        in_channels=int(weight.shape[1]), out_channels=int(weight.shape[0]),
        in_size=_pair(_need(layer, "in_size")), out_size=_pair(_need(layer, "out_size")),
        in_sampling_rate=float(_need(layer, "in_sampling_rate")),
        out_sampling_rate=float(_need(layer, "out_sampling_rate")),
        tmp_sampling_rate=float(_need(layer, "tmp_sampling_rate")),
        in_cutoff=float(_need(layer, "in_cutoff")), out_cutoff=float(_need(layer, "out_cutoff")),
        in_half_width=float(_need(layer, "in_half_width")), out_half_width=float(_need(layer, "out_half_width")),
        conv_kernel=int(weight.shape[-1]), up_factor=int(_need(layer, "up_factor")),
        down_factor=int(_need(layer, "down_factor")), up_taps=int(layer.attr("up_taps", 1)),
        down_taps=int(layer.attr("down_taps", 1)), down_radial=bool(layer.attr("down_radial", False)),
        padding=tuple(int(p) for p in _need(layer, "padding")), is_torgb=bool(_need(layer, "is_torgb")),
        is_critically_sampled=bool(layer.attr("is_critically_sampled", False)),
        conv_clamp=None if clamp is None else float(clamp))
    if int(layer.attr("conv_kernel", cfg.conv_kernel)) != cfg.conv_kernel:
        raise CheckpointError(f"{name}: conv_kernel disagrees with its weight shape")
    for which, taps in (("up_filter", cfg.up_taps), ("down_filter", cfg.down_taps)):
        f = layer.attr(which)
        if (f is None) != (taps == 1) or (f is not None and f.shape[0] != taps):
            raise CheckpointError(f"{name}: {which} does not match its {taps} taps")
    return cfg


def stylegan3_config_from_nvidia(g: PersistentObject) -> StyleGAN3Config:
    """Derive a :class:`StyleGAN3Config` from a stylegan3 ``Generator`` persistent object.

    Raises:
        CheckpointError: a missing attribute or an inconsistent layer chain.
    """
    kw = g.init_kwargs
    mapping, synthesis = g.child("mapping"), g.child("synthesis")
    inp = synthesis.child("input")
    names = [str(n) for n in _need(synthesis, "layer_names")]
    layers = tuple(_layer_config(synthesis.child(n), n) for n in names)
    fc_names = sorted((n for n in mapping.modules if n.startswith("fc")), key=lambda n: int(n[2:]))
    if not fc_names:
        raise CheckpointError("the mapping network has no fc layers")
    fc0 = mapping.child(fc_names[0])
    embed = mapping.modules.get("embed")
    try:
        cfg = StyleGAN3Config(
            z_dim=int(kw.get("z_dim", mapping.attr("z_dim"))), w_dim=int(kw.get("w_dim", mapping.attr("w_dim"))),
            c_dim=int(kw.get("c_dim", mapping.attr("c_dim") or 0)),
            img_resolution=int(kw.get("img_resolution", synthesis.attr("img_resolution"))),
            img_channels=int(kw.get("img_channels", synthesis.attr("img_channels"))),
            input_channels=int(_need(inp, "weight").shape[0]), input_size=_pair(_need(inp, "size")),
            input_sampling_rate=float(_need(inp, "sampling_rate")), input_bandwidth=float(_need(inp, "bandwidth")),
            layers=layers, output_scale=float(synthesis.attr("output_scale", 1.0)), mapping_layers=len(fc_names),
            mapping_embed_features=int(embed.attr("weight").shape[0]) if isinstance(embed, PersistentObject) else None,
            mapping_layer_features=int(fc0.attr("weight").shape[0]) if len(fc_names) > 1 else None,
            mapping_activation=str(fc0.attr("activation", "lrelu")),
            mapping_lr_multiplier=float(fc0.attr("bias_gain", 0.01)))
    except ValueError as exc:
        raise CheckpointError(f"inconsistent stylegan3 network: {exc}") from exc
    if cfg.layer_names() != names:
        raise CheckpointError(f"unexpected stylegan3 layer names {names[:3]}…")
    return cfg


def stylegan3_from_nvidia(g: PersistentObject) -> StyleGAN3Generator:
    """Build our StyleGAN3 generator from a stylegan3 ``G_ema`` object (float32, CPU, eval, frozen)."""
    cfg = stylegan3_config_from_nvidia(g)
    G = StyleGAN3Generator(cfg)
    state = {k: v for k, v in g.state_dict().items() if torch.is_tensor(v)}
    load_state_exact(G, state)
    return G
