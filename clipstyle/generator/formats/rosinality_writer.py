"""Writer of rosinality/stylegan2-pytorch ``.pt`` files: ``{'g_ema': state_dict, 'latent_avg': w_avg}``,
what StyleCLIP, e4e and StyleGAN-NADA load. The exact inverse of
:func:`clipstyle.generator.formats.rosinality.generator_from_rosinality` (its module docstring has the
name table); reading the file back through that reader gives our state dict bit-exactly.

Only what rosinality's ``Generator`` can express is written: an unconditional StyleGAN2 of the
``skip`` architecture whose mapping is ``n_mlp`` layers of ``style_dim`` (z_dim = w_dim), leaky-ReLU,
lr multiplier 0.01. ``conv_clamp`` (NVIDIA's ADA networks clamp activations at ±256) has no rosinality
counterpart; it is dropped, and :func:`save_rosinality` says so in its returned notes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipstyle.generator.formats.common import CheckpointError
from clipstyle.generator.formats.rosinality import DEFAULT_LR_MLP


def rosinality_state(G: torch.nn.Module) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[str]]:
    """``(g_ema state dict, latent_avg [w_dim], notes)`` for our StyleGAN2 generator ``G``.

    Raises:
        CheckpointError: ``G`` is not something rosinality's Generator can hold (says why).
    """
    cfg = getattr(G, "config", None)
    kind = getattr(G, "kind", "")
    if kind != "stylegan2":
        raise CheckpointError(f"rosinality .pt holds StyleGAN2 networks only; this is a {kind or type(G).__name__}")
    problems = []
    if cfg.c_dim:
        problems.append(f"it is conditional (c_dim={cfg.c_dim})")
    if cfg.architecture != "skip":
        problems.append(f"its architecture is {cfg.architecture!r} (rosinality has 'skip' only)")
    if cfg.z_dim != cfg.w_dim or cfg.mapping_layer_features not in (None, cfg.w_dim):
        problems.append("its mapping widths differ from w_dim")
    if cfg.mapping_activation != "lrelu" or cfg.mapping_lr_multiplier != DEFAULT_LR_MLP or cfg.activation != "lrelu":
        problems.append("its activations or mapping lr multiplier differ from rosinality's")
    if not cfg.use_noise:
        problems.append("it has no noise inputs")
    if problems:
        raise CheckpointError("cannot write a rosinality .pt: " + "; ".join(problems))
    notes = []
    if cfg.conv_clamp is not None:
        notes.append(f"conv_clamp={cfg.conv_clamp} dropped (rosinality does not clamp; "
                     f"images differ where activations exceed it)")
    src = {k: v.detach().to("cpu", torch.float32).clone() for k, v in G.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = src[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = src[f"mapping.fc{i}.bias"]
    out["input.input"] = src["synthesis.b4.const"][None]
    kernel = src["synthesis.b8.resample_filter"] * 4 if cfg.img_resolution > 4 else None
    layers = [("conv1", "synthesis.b4.conv1", 0), ("to_rgb1", "synthesis.b4.torgb", None)]
    for j, res in enumerate(cfg.block_resolutions[1:]):
        layers += [(f"convs.{2 * j}", f"synthesis.b{res}.conv0", 2 * j + 1),
                   (f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1", 2 * j + 2),
                   (f"to_rgbs.{j}", f"synthesis.b{res}.torgb", None)]
    for dst, ours, noise_idx in layers:
        out[f"{dst}.conv.weight"] = src[f"{ours}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = src[f"{ours}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = src[f"{ours}.affine.bias"]
        if noise_idx is None:
            out[f"{dst}.bias"] = src[f"{ours}.bias"].reshape(1, -1, 1, 1)
            if dst != "to_rgb1":
                out[f"{dst}.upsample.kernel"] = kernel.clone()
            continue
        if ours.endswith("conv0"):
            out[f"{dst}.conv.blur.kernel"] = kernel.clone()
        out[f"{dst}.noise.weight"] = src[f"{ours}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = src[f"{ours}.bias"]
        out[f"noises.noise_{noise_idx}"] = src[f"{ours}.noise_const"][None, None]
    return out, src["mapping.w_avg"], notes


def save_rosinality(G: torch.nn.Module, path: str | Path) -> list[str]:
    """Write ``G`` as a rosinality ``.pt`` (zip container, ``torch.save``), atomically, with the mode of
    every other output (``0o666 & ~umask``). Returns notes on what could not be carried (e.g. conv_clamp).

    Raises:
        CheckpointError: see :func:`rosinality_state`.
    """
    from clipstyle.io.files import atomic_temp_path

    state, avg, notes = rosinality_state(G)
    with atomic_temp_path(path) as tmp:
        torch.save({"g_ema": state, "latent_avg": avg}, tmp)
    return notes
