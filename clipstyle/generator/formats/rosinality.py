"""Reader for rosinality/stylegan2-pytorch checkpoints (the ``.pt`` files e4e, StyleCLIP and
StyleGAN-NADA use), mapped onto our :class:`~clipstyle.generator.stylegan2.StyleGAN2Generator`.

Accepted containers (all read with ``torch.load(weights_only=True)``; no code from a file runs):

* released / ``convert_weight.py`` layout: ``{'g_ema': state_dict, 'latent_avg': float32[w_dim]}``;
* ``train.py`` training checkpoints: ``{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args', 'ada_aug_p'}``
  (``args`` is an ``argparse.Namespace``, the one extra global we allow); there is no ``latent_avg``;
* a bare generator state dict (keys ``style.1.weight``, ``input.input``, ``conv1.conv.weight`` …).

``g_ema`` is always the network used (never ``g``). Everything is inferred from tensor shapes:
``n_mlp`` from ``style.{i}``, ``style_dim`` from ``style.1.weight``, the size from the number of
``to_rgbs``, channel counts from the conv weights (rosinality's hard-coded channel table is never used).

Layout facts (rosinality name → ours, shapes for a block of resolution ``r = 2**(j+3)``):

===========================================  =============================================  ==================
``style.{i}.weight/bias`` [D, D] / [D]       ``mapping.fc{i-1}.weight/bias``                 as is (raw; lr_mlp 0.01)
``input.input`` [1, C, 4, 4]                 ``synthesis.b4.const`` [C, 4, 4]               drop axis 0
``conv1.*``, ``to_rgb1.*``                   ``synthesis.b4.conv1.*``, ``synthesis.b4.torgb.*``
``convs.{2j}.*`` / ``convs.{2j+1}.*``        ``synthesis.b{r}.conv0.*`` / ``….conv1.*``
``to_rgbs.{j}.*``                            ``synthesis.b{r}.torgb.*``
``….conv.weight`` [1, O, I, k, k]            ``….weight`` [O, I, k, k]                      drop axis 0, no flip
``….conv.modulation.weight/bias`` [I, D]     ``….affine.weight/bias``                       as is (bias init 1)
``….noise.weight`` [1]                       ``….noise_strength`` []                        reshape
``….activate.bias`` [O]                      ``….bias`` [O]                                 as is
``to_rgb*.bias`` [1, 3, 1, 1]                ``….torgb.bias`` [3]                           flatten
``noises.noise_{k}`` [1, 1, s, s]            ``noise_const`` [s, s] of conv layer k          take [0, 0]
``….blur.kernel`` / ``….upsample.kernel``    ``synthesis.b{r}.resample_filter`` [4, 4]      stored ×4; checked
===========================================  =============================================  ==================

Noise layer order: k = 0 → ``b4.conv1``, k = 2j+1 → ``convs[2j]`` (conv0), k = 2j+2 → ``convs[2j+1]``;
these buffers are what rosinality's forward uses with ``randomize_noise=False`` (our ``noise_mode='const'``).
The up-sampling conv is run by rosinality as ``conv_transpose2d`` with the stored kernel, exactly as our
``up=2`` path (which does not flip), so no mirroring is needed (verified on the fixtures).
ToRGB: rosinality multiplies the weight by ``1/sqrt(fan_in)``, we multiply the styles; without
demodulation that is the same product. The demodulation epsilon is added after rosinality's weight
scaling, ours before; the difference is ~1e-8 relative. Truncation (``avg + psi·(w − avg)`` vs
``lerp``) differs by ≤ 2.4e-7 in ws.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from clipstyle.generator.formats.budget import check_fits_state
from clipstyle.generator.formats.common import (
    CheckpointError,
    load_state_exact,
    safe_text,
)
from clipstyle.generator.formats.torch_archive import load_torch_archive
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.kernels import setup_filter

#: Seed and sample count of the mean latent computed for checkpoints without ``latent_avg``.
W_AVG_SEED = 0
W_AVG_SAMPLES = 10_000
DEFAULT_LR_MLP = 0.01  # rosinality's default ``lr_mlp``; not recorded in any checkpoint


def load_rosinality_checkpoint(path: str | Path) -> dict:
    """Read a rosinality ``.pt`` file (zip or legacy torch archive) with ``weights_only=True``.

    The archive is first scanned for budgets and structure (:func:`.torch_archive.scan_torch_archive`);
    only ``argparse.Namespace`` (the ``args`` of training checkpoints) is added to torch's
    weights-only allow-list.

    Returns:
        The top-level dict of the file (tensors on CPU).

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list (nothing from it ran).
        CheckpointError: the archive is truncated/corrupt, over a budget, or does not hold a dict.
    """
    path = Path(path)
    data = load_torch_archive(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{safe_text(path.name)} holds a {type(data).__name__}, not a rosinality checkpoint dict")
    return data


def _pick_state(ckpt: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(g_ema state dict, latent_avg or None) from any of the accepted layouts."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"a rosinality checkpoint is a dict, got a {type(ckpt).__name__}")
    if "g_ema" in ckpt:
        state, avg = ckpt["g_ema"], ckpt.get("latent_avg")
    elif "style.1.weight" in ckpt:
        state, avg = ckpt, None
    else:
        keys = ", ".join(safe_text(str(k), 40) for k in sorted(ckpt, key=str)[:8]) or "none"
        hint = " (only the training generator 'g'; 'g_ema' is required)" if "g" in ckpt else ""
        raise CheckpointError(f"not a rosinality generator checkpoint: no 'g_ema' and no 'style.1.weight' "
                              f"(keys: {keys}){hint}")
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError("the rosinality 'g_ema' entry is not a state dict of tensors")
    if avg is not None and not torch.is_tensor(avg):
        raise CheckpointError(f"'latent_avg' is a {type(avg).__name__}, not a tensor")
    return dict(state), avg


def _taps_from_kernel(k: torch.Tensor) -> tuple[float, ...]:
    """1-D taps of a stored (rank-1) 2-D resampling kernel, scaled so the smallest is 1 (only the ratios matter)."""
    taps = k.to(torch.float64).sum(dim=0)
    taps = taps / taps.abs()[taps != 0].min()
    if torch.allclose(taps, taps.round(), atol=1e-5):  # e.g. (1, 3, 3, 1), as NVIDIA's configs write it
        taps = taps.round()
    return tuple(float(t) for t in taps)


def config_from_rosinality(state: Mapping[str, torch.Tensor], lr_mlp: float = DEFAULT_LR_MLP) -> StyleGAN2Config:
    """Derive a :class:`StyleGAN2Config` from a rosinality generator state dict, from shapes only."""
    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"rosinality state dict lacks {safe_text(key)}")
        return state[key]

    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in state:
        n_mlp += 1
    if n_mlp == 0:
        raise CheckpointError("rosinality state dict has no mapping layers (style.1.weight)")
    w_dim = int(need(f"style.{n_mlp}.weight").shape[0])
    z_dim = int(need("style.1.weight").shape[1])
    hidden = int(need("style.1.weight").shape[0])
    n_rgbs = 0
    while f"to_rgbs.{n_rgbs}.conv.weight" in state:
        n_rgbs += 1
    resolution = 4 * 2**n_rgbs
    channels = [int(need("conv1.conv.weight").shape[1])]
    for j in range(n_rgbs):
        channels.append(int(need(f"convs.{2 * j + 1}.conv.weight").shape[1]))
    if f"convs.{2 * n_rgbs}.conv.weight" in state:
        raise CheckpointError("rosinality state dict has more convs than to_rgbs layers; unsupported layout")
    kernels = [k for name, k in state.items() if name.endswith((".blur.kernel", ".upsample.kernel"))]
    taps = _taps_from_kernel(kernels[0]) if kernels else (1.0, 3.0, 3.0, 1.0)
    return StyleGAN2Config(
        z_dim=z_dim, w_dim=w_dim, c_dim=0, img_resolution=resolution,
        img_channels=int(need("to_rgb1.conv.weight").shape[1]), channels=tuple(channels),
        mapping_layers=n_mlp, mapping_layer_features=hidden if n_mlp > 1 else None,
        mapping_lr_multiplier=float(lr_mlp), architecture="skip", conv_clamp=None, num_fp16_res=0,
        resample_filter=taps,
    )


def _layer_names(cfg: StyleGAN2Config) -> list[tuple[str, str, int | None]]:
    """(rosinality prefix, our prefix, noise index or None) for every modulated layer."""
    out = [("conv1", "synthesis.b4.conv1", 0), ("to_rgb1", "synthesis.b4.torgb", None)]
    for j, res in enumerate(cfg.block_resolutions[1:]):
        out += [(f"convs.{2 * j}", f"synthesis.b{res}.conv0", 2 * j + 1),
                (f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1", 2 * j + 2),
                (f"to_rgbs.{j}", f"synthesis.b{res}.torgb", None)]
    return out


def generator_from_rosinality(ckpt: Mapping[str, Any], *, lr_mlp: float = DEFAULT_LR_MLP,
                              w_avg_samples: int = W_AVG_SAMPLES) -> StyleGAN2Generator:
    """Build our StyleGAN2 generator (float32, CPU, eval, frozen) from a rosinality checkpoint.

    Args:
        ckpt: what :func:`load_rosinality_checkpoint` returned: the released layout (``g_ema``,
            ``latent_avg``), a training checkpoint (``g``, ``d``, ``g_ema``, …) or a bare state dict.
        lr_mlp: rosinality's mapping learning-rate multiplier (not stored in files; 0.01 upstream).
        w_avg_samples: when the file has no ``latent_avg`` (training checkpoints, bare state dicts),
            ``mapping.w_avg`` is the mean of ``mapping(z)`` over this many standard-normal z drawn on
            CPU from a ``torch.Generator`` seeded with :data:`W_AVG_SEED` (deterministic; the global
            RNG is untouched). Another draw moves it by ~1e-2, so it only approximates a stored one.

    Raises:
        CheckpointError: a layout we do not recognise, missing/unexpected/mis-shaped tensors, or
            resampling kernels that differ between layers.
    """
    state, latent_avg = _pick_state(ckpt)
    cfg = config_from_rosinality(state, lr_mlp)
    check_fits_state(cfg, state, "the rosinality checkpoint")
    G = StyleGAN2Generator(cfg)
    ours = G.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"rosinality state dict lacks {safe_text(key)}")
        used.add(key)
        return state[key].detach().to(torch.float32)

    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    const = take("input.input")
    out["synthesis.b4.const"] = const[0] if const.ndim == 4 else const
    for src, dst, noise_idx in _layer_names(cfg):
        weight = take(f"{src}.conv.weight")
        out[f"{dst}.weight"] = weight[0] if weight.ndim == 5 else weight
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        if noise_idx is None:  # ToRGB
            out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)
            continue
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        noise = take(f"noises.noise_{noise_idx}")
        out[f"{dst}.noise_const"] = noise.reshape(noise.shape[-2:])

    # Resampling kernels: stored normalised × 4 (= up²) on every upsampling path; ours are normalised.
    for name in [k for k in state if k.endswith((".blur.kernel", ".upsample.kernel"))]:
        used.add(name)
        mine = ours["synthesis.b8.resample_filter"] if cfg.img_resolution > 4 else None
        theirs = state[name].to(torch.float32) / 4
        if mine is None or theirs.shape != mine.shape or not torch.allclose(theirs, mine, rtol=1e-6, atol=1e-7):
            raise CheckpointError(f"{safe_text(name)} is not the same separable filter as the other layers; unsupported")
    for res in cfg.block_resolutions:
        key = f"synthesis.b{res}.resample_filter"
        out[key] = setup_filter(list(cfg.resample_filter))

    extra = sorted(set(state) - used)
    if extra:
        raise CheckpointError(f"unexpected tensors in the rosinality state dict: {', '.join(safe_text(k) for k in extra[:4])}")
    out["mapping.w_avg"] = ours["mapping.w_avg"]
    load_state_exact(G, out)

    if latent_avg is not None:
        avg = latent_avg.detach().to(torch.float32)
        if avg.shape[-1] != cfg.w_dim:
            raise CheckpointError(f"latent_avg has shape {list(avg.shape)}; expected [{cfg.w_dim}]")
        rows = avg.reshape(-1, cfg.w_dim)
        if not torch.equal(rows, rows[:1].expand_as(rows)):
            raise CheckpointError(f"latent_avg has {rows.shape[0]} different rows; expected one [{cfg.w_dim}] vector")
        G.mapping.w_avg.copy_(rows[0])
    else:
        G.mapping.w_avg.copy_(mean_latent(G, w_avg_samples))
    return G


@torch.no_grad()
def mean_latent(G: StyleGAN2Generator, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED,
                batch: int = 2500) -> torch.Tensor:
    """Mean of ``G.mapping(z)`` over ``samples`` z ~ N(0, I) (seeded CPU draw) → float32 ``[w_dim]``."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros([G.w_dim], dtype=torch.float64)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        z = torch.randn([n, G.z_dim], generator=gen)
        w = G.mapping(z, None)[:, 0]
        total += w.to(torch.float64).sum(dim=0)
        done += n
    return (total / max(samples, 1)).to(torch.float32)
