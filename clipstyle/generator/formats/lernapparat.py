"""Reader for lernapparat's PyTorch port of StyleGAN1: the ``g_all`` state dict (``g_mapping.*``,
``g_synthesis.*``), e.g. ``karras2019stylegan-ffhq-1024x1024.for_g_all.pt`` that vipermu/StyleCLIP uses.

The file is read with ``torch.load(weights_only=True)`` (legacy pre-zip and zip containers alike), so
no code from it runs. It stores no mean latent and no noise maps; we make both up, deterministically,
and record how in the config (``w_avg_origin``, ``noise_origin``; ``clipstyle info`` shows them):

* ``w_avg`` = mean of ``mapping(z)`` over :data:`W_AVG_SAMPLES` z ~ N(0, I) drawn on CPU from
  ``torch.Generator().manual_seed(W_AVG_SEED)`` (float64 accumulation), as
  :func:`clipstyle.generator.stylegan1.mean_w`. A file that carries ``truncation.avg_latent`` (the
  notebook's optional Truncation module) keeps that one instead.
* constant noise (``noise_mode="const"``): ``torch.randn([r, r])`` per layer, in layer order, from
  ``torch.Generator().manual_seed(NOISE_SEED)``. The port itself draws fresh noise on every call
  (our ``noise_mode="random"``).

Name map (port → ours; the port's layouts equal ours, nothing is transposed):

====================================================  ===========================================
``g_mapping.dense{i}.weight|bias``                    ``mapping.fc{i}.weight|bias``
``g_synthesis.torgb.weight|bias``                     ``synthesis.b{R}.torgb.weight|bias``
``blocks.4x4.const`` [1, C, 4, 4] / ``.bias``         ``synthesis.b4.const`` [C, 4, 4] / ``b4.conv0.bias``
``blocks.4x4.conv.*``                                 ``synthesis.b4.conv1.weight|bias``
``blocks.RxR.conv0_up.*`` / ``blocks.RxR.conv1.*``    ``synthesis.bR.conv0.*`` / ``synthesis.bR.conv1.*``
``….epi1.top_epi.noise.weight`` / ``epi2``            ``….conv0.noise_strength`` / ``….conv1.…``
``….epi{1,2}.style_mod.lin.weight|bias``              ``….conv{0,1}.affine.weight|bias``
``….conv0_up.intermediate.kernel`` (blur buffer)      checked equal to our blur, not stored
====================================================  ===========================================

The port's instance norm uses eps 1e-5 (``nn.InstanceNorm2d``), the TF original 1e-8; the converted
network keeps 1e-5 so that it renders what users of this file got. Blocks from 128² on use the fused
up-sampling conv (the original's ``fused_scale='auto'``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from clipstyle.generator.formats.budget import check_fits_state
from clipstyle.generator.formats.common import CheckpointError, load_state_exact
from clipstyle.generator.stylegan1 import StyleGAN1Config, StyleGAN1Generator, mean_w

W_AVG_SEED = 0
W_AVG_SAMPLES = 10_000
NOISE_SEED = 0
PORT_EPS = 1e-5

_BLOCK = re.compile(r"^g_synthesis\.blocks\.(\d+)x\1\.")


def is_lernapparat_state(obj: Any) -> bool:
    """True for a dict whose keys look like the port's ``g_all`` (``g_mapping.*`` / ``g_synthesis.*``)."""
    return isinstance(obj, Mapping) and any(isinstance(k, str) and k.startswith(("g_mapping.", "g_synthesis."))
                                            for k in obj)


def seeded_noise(G: StyleGAN1Generator, seed: int = NOISE_SEED) -> None:
    """Fill every ``noise_const`` of ``G`` with ``randn([r, r])`` from ``torch.Generator().manual_seed(seed)``,
    layer by layer (4² conv0, 4² conv1, 8² conv0, …)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for res in G.config.block_resolutions:
            block = getattr(G.synthesis, f"b{res}")
            for layer in (block.conv0, block.conv1):
                layer.noise_const.copy_(torch.randn([res, res], generator=gen))


def config_from_lernapparat(state: Mapping[str, torch.Tensor]) -> StyleGAN1Config:
    """A :class:`StyleGAN1Config` from the shapes of a ``g_all`` state dict (nothing else is stored)."""
    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"lernapparat g_all state dict lacks {key}")
        return state[key]

    n = 0
    while f"g_mapping.dense{n}.weight" in state:
        n += 1
    if n == 0:
        raise CheckpointError("lernapparat g_all state dict has no mapping (g_mapping.dense0.weight); "
                              "a synthesis-only file cannot be used")
    resolutions = sorted({int(m.group(1)) for k in state if (m := _BLOCK.match(k))})
    if not resolutions or resolutions[0] != 4:
        raise CheckpointError("lernapparat g_all state dict has no 4x4 synthesis block")
    top = resolutions[-1]
    expected = [2**k for k in range(2, top.bit_length())]
    if resolutions != expected:
        raise CheckpointError(f"lernapparat synthesis blocks {resolutions} are not 4..{top} in powers of two")
    channels = [int(need("g_synthesis.blocks.4x4.conv.weight").shape[0])]
    channels += [int(need(f"g_synthesis.blocks.{r}x{r}.conv1.weight").shape[0]) for r in resolutions[1:]]
    d0 = need("g_mapping.dense0.weight")
    try:
        return StyleGAN1Config(
            z_dim=int(d0.shape[1]), w_dim=int(need(f"g_mapping.dense{n - 1}.weight").shape[0]), c_dim=0,
            img_resolution=top, img_channels=int(need("g_synthesis.torgb.weight").shape[0]),
            channels=tuple(channels), mapping_layers=n, mapping_layer_features=int(d0.shape[0]) if n > 1 else None,
            instance_norm_eps=PORT_EPS, fused_min_resolution=128,
            w_avg_origin="stored (truncation.avg_latent)" if "truncation.avg_latent" in state else
            f"made up: mean of mapping over {W_AVG_SAMPLES} z (torch seed {W_AVG_SEED}); the file stores none",
            noise_origin=f"made up: seeded constant noise (torch seed {NOISE_SEED}); the file stores none",
        )
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"unsupported lernapparat StyleGAN1 shapes: {exc}") from None


def generator_from_lernapparat(state: Mapping[str, Any], *, w_avg_samples: int = W_AVG_SAMPLES) -> StyleGAN1Generator:
    """Our StyleGAN1 generator (float32, CPU, eval, frozen) from the port's ``g_all`` state dict.

    Args:
        state: what ``torch.load(weights_only=True)`` returned for the file.
        w_avg_samples: samples of the made-up ``w_avg`` (see the module docstring).

    Raises:
        CheckpointError: not a ``g_all`` state dict, missing/unexpected/mis-shaped tensors, or a blur
            buffer other than [1, 2, 1]⊗[1, 2, 1]/16.
    """
    if not is_lernapparat_state(state) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError("not a lernapparat StyleGAN1 g_all state dict of tensors")
    cfg = config_from_lernapparat(state)
    check_fits_state(cfg, state, "the lernapparat StyleGAN1 network")  # numbers and size before building
    G = StyleGAN1Generator(cfg)
    ours = G.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"lernapparat g_all state dict lacks {key}")
        used.add(key)
        return state[key].detach().to(torch.float32)

    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = take(f"g_mapping.dense{i}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"g_mapping.dense{i}.bias")
    top = cfg.img_resolution
    out[f"synthesis.b{top}.torgb.weight"] = take("g_synthesis.torgb.weight")
    out[f"synthesis.b{top}.torgb.bias"] = take("g_synthesis.torgb.bias")
    for res in cfg.block_resolutions:
        src, dst = f"g_synthesis.blocks.{res}x{res}", f"synthesis.b{res}"
        if res == 4:
            const = take(f"{src}.const")
            out[f"{dst}.const"] = const[0] if const.ndim == 4 else const
            out[f"{dst}.conv0.bias"] = take(f"{src}.bias")
            out[f"{dst}.conv1.weight"] = take(f"{src}.conv.weight")
            out[f"{dst}.conv1.bias"] = take(f"{src}.conv.bias")
        else:
            out[f"{dst}.conv0.weight"] = take(f"{src}.conv0_up.weight")
            out[f"{dst}.conv0.bias"] = take(f"{src}.conv0_up.bias")
            out[f"{dst}.conv1.weight"] = take(f"{src}.conv1.weight")
            out[f"{dst}.conv1.bias"] = take(f"{src}.conv1.bias")
            blur = take(f"{src}.conv0_up.intermediate.kernel")
            mine = ours[f"{dst}.blur_filter"]
            if blur.numel() != mine.numel() or not torch.allclose(blur.reshape(mine.shape), mine, atol=1e-7):
                raise CheckpointError(f"{src}.conv0_up.intermediate.kernel is not the [1,2,1] blur; unsupported")
        for epi, layer in (("epi1", "conv0"), ("epi2", "conv1")):
            out[f"{dst}.{layer}.noise_strength"] = take(f"{src}.{epi}.top_epi.noise.weight")
            out[f"{dst}.{layer}.affine.weight"] = take(f"{src}.{epi}.style_mod.lin.weight")
            out[f"{dst}.{layer}.affine.bias"] = take(f"{src}.{epi}.style_mod.lin.bias")
            out[f"{dst}.{layer}.noise_const"] = ours[f"{dst}.{layer}.noise_const"]
        out[f"{dst}.blur_filter"] = ours[f"{dst}.blur_filter"]
    avg = state.get("truncation.avg_latent")
    if avg is not None:
        used.add("truncation.avg_latent")
    extra = sorted(set(state) - used)
    if extra:
        raise CheckpointError(f"unexpected tensors in the lernapparat g_all state dict: {', '.join(extra[:4])}")
    out["mapping.w_avg"] = ours["mapping.w_avg"]
    load_state_exact(G, out)
    seeded_noise(G)
    with torch.no_grad():
        if avg is not None:
            avg = avg.detach().to(torch.float32).reshape(-1)
            if avg.shape[0] != cfg.w_dim:
                raise CheckpointError(f"truncation.avg_latent has {avg.shape[0]} values; expected {cfg.w_dim}")
            G.mapping.w_avg.copy_(avg)
        else:
            G.mapping.w_avg.copy_(mean_w(G, w_avg_samples, W_AVG_SEED))
    return G
