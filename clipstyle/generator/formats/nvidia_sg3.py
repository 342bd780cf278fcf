"""Reader for NVIDIA stylegan3 snapshots (``training.networks_stylegan3.Generator``, configs T and R).

The configuration is read from what the snapshot stores — each ``SynthesisLayer``'s plain attributes
(sizes, sampling rates, cutoffs, half-widths, factors, taps, padding, ``conv_kernel``, ``conv_clamp``,
``is_torgb`` …), the ``SynthesisInput``'s, ``SynthesisNetwork.output_scale``/``layer_names``, and tensor
shapes — never from constructor defaults, which the pickle does not record (fixtures README §3.4).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from clipstyle.generator.formats.budget import check_budget, check_fits_state, limits
from clipstyle.generator.formats.common import (
    CheckpointError,
    load_state_exact,
    safe_text,
)
from clipstyle.generator.formats.safe_pickle import PersistentObject
from clipstyle.generator.stylegan3 import (
    SG3LayerConfig,
    StyleGAN3Config,
    StyleGAN3Generator,
)

__all__ = ["stylegan3_config_from_nvidia", "stylegan3_from_nvidia"]

#: Upstream default of ``SynthesisNetwork.output_scale`` (applied when a snapshot does not store it).
DEFAULT_OUTPUT_SCALE = 0.25


def _pair(v: Any) -> tuple[int, int]:
    """A stored size (int, NumPy scalar or ``[w, h]`` array) as ``(w, h)``."""
    arr = np.atleast_1d(np.asarray(v))
    if arr.dtype.kind not in "iuf" or arr.size not in (1, 2):
        raise CheckpointError(f"unexpected size value {safe_text(v)}")
    vals = [int(t) for t in arr.ravel()]
    hi = 4 * limits().max_resolution
    if not all(1 <= t <= hi for t in vals):
        raise CheckpointError(f"size {vals} is outside 1..{hi}")
    return (vals[0], vals[-1])


def _need(obj: PersistentObject, name: str) -> Any:
    value = obj.attr(name)
    if value is None:
        raise CheckpointError(f"{safe_text(obj.class_name)} lacks the attribute {name!r}; "
                              f"not a stylegan3 snapshot we can read")
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
    if len(cfg.padding) != 4:
        raise CheckpointError(f"{name}: padding {list(cfg.padding)[:6]} is not (x0, x1, y0, y1)")
    # filtered_lrelu output size: full conv (in + k - 1), up-sample, pad, FIR (up_taps), FIR (down_taps),
    # down-sample; it must be exactly out_size, or the image would not come out at img_resolution.
    for axis, (n_in, n_out) in enumerate(zip(cfg.in_size, cfg.out_size)):
        pad = cfg.padding[2 * axis] + cfg.padding[2 * axis + 1]
        up_len = (n_in + cfg.conv_kernel - 1) * cfg.up_factor + pad - (cfg.up_taps - 1) - (cfg.down_taps - 1)
        got = (up_len + cfg.down_factor - 1) // cfg.down_factor if up_len > 0 and cfg.down_factor > 0 else 0
        if got != n_out:
            raise CheckpointError(f"{name}: padding {list(cfg.padding)} makes {'xy'[axis]}-size {got}, "
                                  f"not the stored out_size {n_out}")
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
    raw_names = _need(synthesis, "layer_names")
    if not isinstance(raw_names, (list, tuple)) or not all(isinstance(n, str) for n in raw_names):
        raise CheckpointError("SynthesisNetwork.layer_names is not a list of names")
    if len(raw_names) > limits().max_layers:
        raise CheckpointError(f"{len(raw_names)} synthesis layers; refused")
    names = [safe_text(n) for n in raw_names]
    if len(set(names)) != len(names):
        raise CheckpointError("SynthesisNetwork.layer_names repeats a layer")
    layers = tuple(_layer_config(synthesis.child(n), n) for n in names)
    fc_names = sorted((n for n in mapping.modules if re.fullmatch(r"fc\d{1,3}", n)), key=lambda n: int(n[2:]))
    if fc_names != [f"fc{i}" for i in range(len(fc_names))]:
        raise CheckpointError(f"the mapping network's layers are not fc0..fc{len(fc_names) - 1}")
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
            layers=layers, output_scale=_output_scale(synthesis), mapping_layers=len(fc_names),
            mapping_embed_features=int(embed.attr("weight").shape[0]) if isinstance(embed, PersistentObject) else None,
            mapping_layer_features=int(fc0.attr("weight").shape[0]) if len(fc_names) > 1 else None,
            mapping_activation=str(fc0.attr("activation", "lrelu")),
            mapping_lr_multiplier=float(fc0.attr("bias_gain", 0.01)))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"inconsistent stylegan3 network: {safe_text(exc, 160)}") from None
    if cfg.layer_names() != names:
        raise CheckpointError(f"unexpected stylegan3 layer names {names[:3]}…")
    check_budget(cfg, what="the stylegan3 network")
    return cfg


def _output_scale(synthesis: PersistentObject) -> float:
    """``SynthesisNetwork.output_scale``; absent → the upstream default 0.25 (never 1.0)."""
    value = synthesis.attr("output_scale")
    value = DEFAULT_OUTPUT_SCALE if value is None else float(value)
    if not np.isfinite(value) or not 0 < abs(value) <= 16:
        raise CheckpointError(f"output_scale {value} is not a plausible image scale")
    return value


def stylegan3_from_nvidia(g: PersistentObject) -> StyleGAN3Generator:
    """Build our StyleGAN3 generator from a stylegan3 ``G_ema`` object (float32, CPU, eval, frozen)."""
    cfg = stylegan3_config_from_nvidia(g)
    state = {k: v for k, v in g.state_dict().items() if torch.is_tensor(v)}
    check_fits_state(cfg, state, "the stylegan3 network")
    G = StyleGAN3Generator(cfg)
    load_state_exact(G, state)
    return G
