"""Reader for TensorFlow-era StyleGAN2 network pickles (NVlabs/stylegan2 and NVlabs/stylegan2-ada TF),
mapped onto our :class:`~clipstyle.generator.stylegan2.StyleGAN2Generator`. No TensorFlow needed.

The pickle (read by :mod:`.safe_pickle`, which turns every ``dnnlib.tflib.network.Network`` into a
:class:`~clipstyle.generator.formats.safe_pickle.TFNetworkStandIn`) holds a tuple ``(G, D, Gs)``; we use ``Gs``,
the moving-average generator. Each network's ``__dict__`` has ``version`` (4 for stylegan2, 5 for
stylegan2-ada TF), ``name``, ``static_kwargs`` (only the keyword arguments that were passed: defaults
matter), ``components`` (``synthesis``, ``mapping`` sub-networks) and ``variables``: a list of
``(name, value)`` with float32 NumPy arrays, or NumPy float32 scalars for 0-d variables.

Variable → parameter correspondence (TF kernels are ``[kh, kw, in, out]``, dense ``[in, out]``):

=======================================  =====================================  ==========================
``dlatent_avg`` (Gs) [w_dim]             ``mapping.w_avg``                      as is
``mapping/Dense{i}/weight`` [in, out]    ``mapping.fc{i}.weight`` [out, in]     transpose
``mapping/Dense{i}/bias``                ``mapping.fc{i}.bias``                 as is
``mapping/LabelEmbed/{weight,bias}``     ``mapping.embed.{weight,bias}``        transpose / as is
``4x4/Const/const`` [1, C, 4, 4]         ``synthesis.b4.const`` [C, 4, 4]       drop axis 0
``4x4/Conv/*``                           ``synthesis.b4.conv1.*``
``{r}x{r}/Conv0_up/weight``              ``synthesis.b{r}.conv0.weight``        mirror kh, kw; transpose
``{r}x{r}/Conv1/weight``, ``…/Conv/…``   ``….conv1.weight``                     transpose (3, 2, 0, 1)
``…/ToRGB/weight`` [1, 1, in, C]         ``….torgb.weight`` [C, in, 1, 1]       transpose
``…/mod_weight`` [w_dim, in]             ``….affine.weight`` [in, w_dim]        transpose
``…/mod_bias`` [in]                      ``….affine.bias``                      **+ 1** (TF adds it at run time)
``…/noise_strength`` (scalar)            ``….noise_strength`` []                as is
``…/bias``                               ``….bias``                             as is
``noise{k}`` [1, 1, s, s]                ``noise_const`` [s, s] of conv layer k  [0, 0]; k = 0 → b4.conv1,
                                                                                 res 2^j: conv0 2j−5, conv1 2j−4
``{r}x{r}/Skip/weight`` (resnet)         ``synthesis.b{r}.skip.weight``         mirror + transpose
``lod`` (Gs)                             —                                      ignored
=======================================  =====================================  ==========================

Stored weights are "raw" in both worlds (the 1/√fan_in and ``mapping_lrmul`` gains apply at run time),
so only the layouts change. TF runs the up-sampling conv as a transposed conv with the stored kernel
mirrored relative to PyTorch's; hence the mirroring of ``Conv0_up`` and ``Skip``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

from clipstyle.generator.formats.budget import check_fits_state
from clipstyle.generator.formats.common import (
    CheckpointError,
    load_state_exact,
    safe_text,
)
from clipstyle.generator.formats.safe_pickle import TFNetworkStandIn
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.kernels import setup_filter

SUPPORTED_VERSIONS = (4, 5)
_LEGACY_MARKERS = ("ToRGB_lod", "Grow_lod", "StyleMod", "/Noise/weight", "LabelConcat")


def _pick_gs(obj: Any) -> TFNetworkStandIn:
    if isinstance(obj, TFNetworkStandIn):
        return obj
    if isinstance(obj, tuple) and len(obj) in (1, 3) and all(isinstance(o, TFNetworkStandIn) for o in obj):
        return obj[-1]
    raise CheckpointError(f"expected a TensorFlow (G, D, Gs) tuple or one Network, got a {type(obj).__name__}"
                          + (f" of length {len(obj)}" if isinstance(obj, tuple) else ""))


def _variables(net: TFNetworkStandIn) -> dict[str, np.ndarray]:
    items = getattr(net, "variables", None)
    if not isinstance(items, list):
        raise CheckpointError(f"TensorFlow network {safe_text(getattr(net, 'name', '?'))} has no variable list")
    out = {}
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError("a TensorFlow network variable is not a (name, value) pair")
        value = np.asarray(item[1])
        if value.dtype.kind != "f":
            raise CheckpointError(f"TensorFlow variable {safe_text(item[0])} is not floating point ({value.dtype})")
        if item[0] in out:
            raise CheckpointError(f"TensorFlow variable {safe_text(item[0])} is stored twice; refused")
        out[item[0]] = value
    return out


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C", copy=True))  # keeps 0-d as 0-d


def _kwarg(kw: dict, key: str, default: Any) -> Any:
    v = kw.get(key)
    return default if v is None else v


def generator_from_tf(obj: Any) -> StyleGAN2Generator:
    """Build our StyleGAN2 generator (float32, CPU, eval, frozen) from an unpickled TF network pickle.

    Args:
        obj: the unpickled ``(G, D, Gs)`` tuple of ``TFNetworkStandIn`` (``Gs`` is used), or one
            generator Network.

    Raises:
        CheckpointError: not a StyleGAN2 generator (discriminator, progressive-growing ``ToRGB_lod*``
            networks, StyleGAN1, label-concat conditioning), an unknown state version, or tensors that
            do not fit the architecture they describe. The message says what was found.
    """
    gs = _pick_gs(obj)
    version = getattr(gs, "version", None)
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"TensorFlow Network state version {version!r} is not supported "
                              f"(known: {', '.join(map(str, SUPPORTED_VERSIONS))})")
    comps = getattr(gs, "components", None) or {}
    syn, mapn = comps.get("synthesis"), comps.get("mapping")
    if not isinstance(syn, TFNetworkStandIn) or not isinstance(mapn, TFNetworkStandIn):
        raise CheckpointError(f"TensorFlow network {safe_text(getattr(gs, 'name', '?'))} "
                              f"({safe_text(getattr(gs, 'build_func_name', '?'))}) has no synthesis/mapping components; "
                              f"not a generator")
    top_kw = dict(getattr(gs, "static_kwargs", None) or {})
    skw = {**top_kw, **dict(getattr(syn, "static_kwargs", None) or {})}
    mkw = {**top_kw, **dict(getattr(mapn, "static_kwargs", None) or {})}
    sv, mv, gv = _variables(syn), _variables(mapn), _variables(gs)
    for name in list(sv) + list(mv):
        for marker in _LEGACY_MARKERS:
            if marker in name:
                kind = "StyleGAN1 / progressive-growing" if marker != "LabelConcat" else "label-concat conditional"
                raise CheckpointError(f"unsupported TensorFlow generator layout: found variable {safe_text(name)} "
                                      f"({kind} network); only StyleGAN2 config E/F-style networks are supported")
    if mkw.get("normalize_latents") is False:
        raise CheckpointError("TensorFlow mapping with normalize_latents=False is not supported")

    # ---- mapping ----
    n_dense = 0
    while f"Dense{n_dense}/weight" in mv:
        n_dense += 1
    if n_dense == 0:
        raise CheckpointError(f"TensorFlow mapping network has no Dense0 layer "
                              f"(variables: {', '.join(safe_text(n, 40) for n in list(mv)[:4])})")
    if mkw.get("mapping_layers") is not None and int(mkw["mapping_layers"]) != n_dense:
        raise CheckpointError(f"mapping_layers={mkw['mapping_layers']} but {n_dense} Dense layers are stored")
    c_dim = int(_kwarg(mkw, "label_size", 0))
    embed = None
    if c_dim > 0:
        if "LabelEmbed/weight" not in mv:
            raise CheckpointError(f"conditional TensorFlow network (label_size={c_dim}) without LabelEmbed; unsupported")
        embed = int(mv["LabelEmbed/weight"].shape[1])
    w_dim = int(mv[f"Dense{n_dense - 1}/weight"].shape[1])
    z_dim = int(mv["Dense0/weight"].shape[0]) - (embed or 0)
    if int(_kwarg(mkw, "latent_size", z_dim)) != z_dim or int(_kwarg(mkw, "dlatent_size", w_dim)) != w_dim:
        raise CheckpointError(f"latent sizes in static_kwargs ({mkw.get('latent_size')}, {mkw.get('dlatent_size')}) "
                              f"disagree with the Dense shapes ({z_dim}, {w_dim})")

    # ---- synthesis ----
    res_found = sorted({int(m.group(1)) for n in sv if (m := re.match(r"(\d+)x\1/", n))})
    if not res_found or res_found[0] != 4:
        raise CheckpointError("TensorFlow synthesis network has no 4x4 block")
    resolution = res_found[-1]
    if int(_kwarg(skw, "resolution", resolution)) != resolution:
        raise CheckpointError(f"static resolution {skw['resolution']} but blocks up to {resolution}x{resolution} are stored")
    block_res = [2**k for k in range(2, int(math.log2(resolution)) + 1)]
    if res_found != block_res:
        raise CheckpointError(f"TensorFlow synthesis blocks {res_found} are not 4..{resolution} in powers of two")
    declared = skw.get("architecture")
    if any(n.endswith("/Skip/weight") for n in sv):
        arch = "resnet"
    elif any(f"{r}x{r}/ToRGB/weight" in sv for r in block_res[:-1]):
        arch = "skip"
    else:  # one ToRGB only: 'orig' (a 4x4 network is the same in every architecture)
        arch = "orig" if resolution > 4 else str(declared or "skip")
    if declared is not None and declared != arch:
        raise CheckpointError(f"architecture={declared!r} in static_kwargs but the variables describe {arch!r}")
    conv_names = ["4x4/Conv/weight"] + [f"{r}x{r}/Conv1/weight" for r in block_res[1:]]
    absent = [n for n in conv_names if n not in sv]
    if absent:
        raise CheckpointError(f"TensorFlow synthesis network lacks {', '.join(absent[:3])}; not a StyleGAN2 generator")
    channels = [int(sv[n].shape[3]) for n in conv_names]
    last_rgb = sv.get(f"{resolution}x{resolution}/ToRGB/weight")
    if last_rgb is None:
        raise CheckpointError(f"TensorFlow synthesis network has no {resolution}x{resolution}/ToRGB layer")
    img_channels = int(last_rgb.shape[3])
    use_noise = "4x4/Conv/noise_strength" in sv
    conv_clamp = skw.get("conv_clamp")
    try:
        cfg = StyleGAN2Config(
            z_dim=z_dim, w_dim=w_dim, c_dim=c_dim, img_resolution=resolution, img_channels=img_channels,
            channels=tuple(channels), mapping_layers=n_dense, mapping_embed_features=embed,
            mapping_layer_features=int(mv["Dense0/weight"].shape[1]) if n_dense > 1 else None,
            mapping_activation=str(_kwarg(mkw, "mapping_nonlinearity", "lrelu")),
            mapping_lr_multiplier=float(_kwarg(mkw, "mapping_lrmul", 0.01)),
            architecture=arch, conv_clamp=None if conv_clamp is None else float(conv_clamp),
            num_fp16_res=int(_kwarg(skw, "num_fp16_res", 0)),
            resample_filter=tuple(float(t) for t in _kwarg(skw, "resample_kernel", [1, 3, 3, 1])),
            use_noise=use_noise, activation=str(_kwarg(skw, "nonlinearity", "lrelu")),
        )
        check_fits_state(cfg, {**sv, **{"m/" + k: v for k, v in mv.items()}}, "the TensorFlow network")
        G = StyleGAN2Generator(cfg)
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"unsupported TensorFlow StyleGAN2 settings: {safe_text(exc, 160)}") from None
    if "dlatent_broadcast" in mkw and mkw["dlatent_broadcast"] is not None and int(mkw["dlatent_broadcast"]) != cfg.num_ws:
        raise CheckpointError(f"dlatent_broadcast={mkw['dlatent_broadcast']} but the synthesis needs {cfg.num_ws} ws rows")

    try:
        state, used = _convert(sv, mv, cfg)
    except (ValueError, IndexError) as exc:  # a variable of the wrong rank
        raise CheckpointError(f"a TensorFlow variable has an unexpected shape ({exc})") from None
    extra = sorted(set(sv) - used)
    if extra:
        raise CheckpointError(f"unexpected TensorFlow synthesis variables for a {arch!r} StyleGAN2: "
                              f"{', '.join(safe_text(n, 40) for n in extra[:4])}")
    extra = sorted(n for n in mv if not re.fullmatch(r"(Dense\d+|LabelEmbed)/(weight|bias)", n))
    if extra:
        raise CheckpointError(f"unexpected TensorFlow mapping variables: {', '.join(safe_text(n, 40) for n in extra[:4])}")
    avg = gv.get("dlatent_avg")
    state["mapping.w_avg"] = _t(avg.reshape(-1)) if avg is not None else torch.zeros([w_dim])
    load_state_exact(G, state)
    if avg is None and c_dim == 0:  # no tracked mean latent: estimate it (seeded, see rosinality.mean_latent)
        from clipstyle.generator.formats.rosinality import mean_latent

        G.mapping.w_avg.copy_(mean_latent(G))  # (conditional nets keep 0: the mean depends on the class)
    return G


def _convert(sv: dict[str, np.ndarray], mv: dict[str, np.ndarray],
             cfg: StyleGAN2Config) -> tuple[dict[str, torch.Tensor], set[str]]:
    """TF variables → our state dict (all but ``mapping.w_avg``); also the synthesis names consumed."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in sv:
            raise CheckpointError(f"TensorFlow synthesis network lacks {name}")
        used.add(name)
        return sv[name]

    def mtake(name: str) -> np.ndarray:
        if name not in mv:
            raise CheckpointError(f"TensorFlow mapping network lacks {name}")
        return mv[name]

    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = _t(mtake(f"Dense{i}/weight").T)
        out[f"mapping.fc{i}.bias"] = _t(mtake(f"Dense{i}/bias"))
    if cfg.c_dim > 0:
        out["mapping.embed.weight"] = _t(mtake("LabelEmbed/weight").T)
        out["mapping.embed.bias"] = _t(mtake("LabelEmbed/bias"))

    def layer(src: str, dst: str, noise_idx: int | None, mirror: bool = False, torgb: bool = False) -> None:
        w = take(f"{src}/weight")
        if mirror:
            w = w[::-1, ::-1]
        out[f"{dst}.weight"] = _t(w.transpose(3, 2, 0, 1))
        out[f"{dst}.affine.weight"] = _t(take(f"{src}/mod_weight").T)
        out[f"{dst}.affine.bias"] = _t(take(f"{src}/mod_bias") + np.float32(1))
        out[f"{dst}.bias"] = _t(take(f"{src}/bias"))
        if torgb or not cfg.use_noise:
            return
        out[f"{dst}.noise_strength"] = _t(np.asarray(take(f"{src}/noise_strength")).reshape([]))
        noise = take(f"noise{noise_idx}")
        out[f"{dst}.noise_const"] = _t(noise.reshape(noise.shape[-2:]))

    const = take("4x4/Const/const")
    out["synthesis.b4.const"] = _t(const[0] if const.ndim == 4 else const)
    layer("4x4/Conv", "synthesis.b4.conv1", 0)
    for res in cfg.block_resolutions:
        j = int(math.log2(res))
        block = f"{res}x{res}"
        if res > 4:
            layer(f"{block}/Conv0_up", f"synthesis.b{res}.conv0", 2 * j - 5, mirror=True)
            layer(f"{block}/Conv1", f"synthesis.b{res}.conv1", 2 * j - 4)
            if cfg.architecture == "resnet":
                w = take(f"{block}/Skip/weight")[::-1, ::-1]
                out[f"synthesis.b{res}.skip.weight"] = _t(w.transpose(3, 2, 0, 1))
        if cfg.architecture == "skip" or res == cfg.img_resolution:
            layer(f"{block}/ToRGB", f"synthesis.b{res}.torgb", None, torgb=True)
        out[f"synthesis.b{res}.resample_filter"] = setup_filter(list(cfg.resample_filter))
    return out, used
