"""Reader for NVlabs/stylegan (StyleGAN1) TensorFlow network pickles, mapped onto our
:class:`~clipstyle.generator.stylegan1.StyleGAN1Generator`. No TensorFlow needed.

The pickle holds ``(G, D, Gs)``; it is read by :func:`~clipstyle.generator.formats.safe_pickle.safe_load_pickle`
(allow-list, nothing runs), which turns each ``dnnlib.tflib.network.Network`` into a
:class:`~clipstyle.generator.formats.safe_pickle.TFNetworkStandIn`. We use ``Gs`` (build function
``G_style``) and only its attributes ``name``, ``static_kwargs``, ``components`` (``synthesis`` =
``G_synthesis``, ``mapping`` = ``G_mapping``), ``build_func_name`` and ``variables``
(``[(name, float32 ndarray | numpy scalar)]``). ``static_kwargs`` holds only what was passed; the build
functions' defaults apply otherwise (``mapping_lrmul`` 0.01, ``fused_scale`` 'auto' = fused from 128²).

Variables → our state dict (TF kernels ``[kh, kw, in, out]``, dense ``[in, out]``):

=============================================  ==========================================  =============
``Gs/dlatent_avg`` [w_dim]                      ``mapping.w_avg``                          as is
``Gs/lod``, ``G_synthesis/lod``                 —                                          must be 0
``G_mapping/Dense{i}/weight|bias``              ``mapping.fc{i}.weight|bias``              transpose
``G_mapping/LabelConcat/weight`` [c, z]         ``mapping.label_concat`` [z, c]            transpose
``4x4/Const/const`` [1, C, 4, 4]                ``synthesis.b4.const`` [C, 4, 4]           drop axis 0
``4x4/Const/{bias, Noise/weight, StyleMod/*}``  ``synthesis.b4.conv0.{bias, noise_strength, affine.*}``
``4x4/Conv/*``                                  ``synthesis.b4.conv1.*``
``RxR/Conv0_up/*``, ``RxR/Conv1/*``             ``synthesis.bR.conv0.*``, ``synthesis.bR.conv1.*``
``…/weight`` (conv, fused or not)               ``….weight`` [out, in, kh, kw]             permute (3, 2, 0, 1)
``…/StyleMod/weight`` [w_dim, 2C]               ``….affine.weight`` [2C, w_dim]            transpose
``ToRGB_lod0/weight|bias`` [1, 1, C, 3]          ``synthesis.bR.torgb.weight|bias``         permute
``ToRGB_lod{n>0}``                              —                                          dropped (unused at lod 0)
``noise{k}`` [1, 1, r, r]                       ``noise_const`` of layer k                 [0, 0]
=============================================  ==========================================  =============

Layer k is conv0 (k even) or conv1 (k odd) of block ``2**(k//2 + 2)``. The converted network keeps the
TF numerics (instance-norm eps 1e-8).
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
from clipstyle.generator.stylegan1 import StyleGAN1Config, StyleGAN1Generator, mean_w

TF_EPS = 1e-8
_SG1_MARKERS = ("/StyleMod/", "ToRGB_lod", "/Noise/weight")


def _vars(net: TFNetworkStandIn) -> dict[str, np.ndarray]:
    items = getattr(net, "variables", None)
    if not isinstance(items, list):
        raise CheckpointError(f"TensorFlow network {getattr(net, 'name', '?')!r} has no variable list")
    out = {}
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError("a TensorFlow network variable is not a (name, value) pair")
        value = np.asarray(item[1])
        if value.dtype.kind != "f":
            raise CheckpointError(f"TensorFlow variable {item[0]} is not floating point ({value.dtype})")
        out[item[0]] = value
    return out


def _gs(obj: Any) -> TFNetworkStandIn | None:
    if isinstance(obj, TFNetworkStandIn):
        return obj
    if isinstance(obj, tuple) and obj and all(isinstance(o, TFNetworkStandIn) for o in obj):
        return obj[-1]
    return None


def is_stylegan1_tf(obj: Any) -> bool:
    """True for an unpickled NVlabs/stylegan ``(G, D, Gs)`` (or one ``Gs``): a ``G_style`` network, or a
    synthesis component with StyleMod / ToRGB_lod / Noise variables."""
    gs = _gs(obj)
    if gs is None:
        return False
    if getattr(gs, "build_func_name", None) == "G_style":
        return True
    syn = (getattr(gs, "components", None) or {}).get("synthesis") if isinstance(getattr(gs, "components", None), dict) else None
    names = [v[0] for v in (getattr(syn, "variables", None) or []) if isinstance(v, tuple) and v and isinstance(v[0], str)]
    return any(m in n for n in names for m in _SG1_MARKERS)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C", copy=True))


def _kw(kw: dict, key: str, default: Any) -> Any:
    v = kw.get(key)
    return default if v is None else v


def generator_from_tf_sg1(obj: Any) -> StyleGAN1Generator:
    """Our StyleGAN1 generator (float32, CPU, eval, frozen) from an unpickled NVlabs/stylegan pickle.

    Args:
        obj: the ``(G, D, Gs)`` tuple of ``TFNetworkStandIn`` (``Gs`` is used) or one generator Network.

    Raises:
        CheckpointError: no synthesis/mapping components (e.g. a discriminator), ``lod`` ≠ 0 (a network
            caught mid-growth), settings we do not build (no styles, no noise, no const input,
            ``normalize_latents=False``), or variables that do not fit the architecture they describe.
    """
    gs = _gs(obj)
    if gs is None:
        raise CheckpointError(f"expected a TensorFlow (G, D, Gs) tuple, got a {type(obj).__name__}")
    comps = getattr(gs, "components", None)
    comps = comps if isinstance(comps, dict) else {}
    syn, mapn = comps.get("synthesis"), comps.get("mapping")
    if not isinstance(syn, TFNetworkStandIn) or not isinstance(mapn, TFNetworkStandIn):
        raise CheckpointError(f"TensorFlow network {getattr(gs, 'name', '?')!r} ({getattr(gs, 'build_func_name', '?')}) "
                              f"has no synthesis/mapping components; not a StyleGAN1 generator")
    top = dict(getattr(gs, "static_kwargs", None) or {})
    skw = {**top, **dict(getattr(syn, "static_kwargs", None) or {})}
    mkw = {**top, **dict(getattr(mapn, "static_kwargs", None) or {})}
    for flag in ("use_styles", "const_input_layer", "use_noise", "use_instance_norm", "normalize_latents", "use_wscale"):
        if skw.get(flag) is False or mkw.get(flag) is False:
            raise CheckpointError(f"StyleGAN1 TensorFlow network with {flag}=False is not supported")
    if skw.get("use_pixel_norm"):
        raise CheckpointError("StyleGAN1 TensorFlow network with use_pixel_norm=True is not supported")
    for key in ("nonlinearity", "mapping_nonlinearity"):
        if _kw({**skw, **mkw}, key, "lrelu") != "lrelu":
            raise CheckpointError(f"StyleGAN1 TensorFlow network with {key}={skw.get(key) or mkw.get(key)!r} is not supported")
    sv, mv, gv = _vars(syn), _vars(mapn), _vars(gs)
    for net, vs in (("Gs", gv), ("G_synthesis", sv)):
        if "lod" in vs and float(np.asarray(vs["lod"]).reshape(-1)[0]) != 0.0:
            raise CheckpointError(f"{net}/lod is {float(np.asarray(vs['lod']).reshape(-1)[0])}: a network still growing "
                                  f"(only lod 0, the full resolution, is supported)")

    # ---- mapping ----
    n_dense = 0
    while f"Dense{n_dense}/weight" in mv:
        n_dense += 1
    if n_dense == 0:
        raise CheckpointError("TensorFlow StyleGAN1 mapping network has no Dense0 layer")
    c_dim = int(mv["LabelConcat/weight"].shape[0]) if "LabelConcat/weight" in mv else 0
    if int(_kw(mkw, "label_size", c_dim)) != c_dim:
        raise CheckpointError(f"label_size={mkw.get('label_size')} but the mapping stores {c_dim} labels")
    w_dim = int(mv[f"Dense{n_dense - 1}/weight"].shape[1])
    in0 = int(mv["Dense0/weight"].shape[0])
    z_dim = in0 // 2 if c_dim else in0
    extra = sorted(n for n in mv if not re.fullmatch(r"Dense\d+/(weight|bias)|LabelConcat/weight", n))
    if extra:
        raise CheckpointError(f"unexpected TensorFlow StyleGAN1 mapping variables: {', '.join(extra[:4])}")

    # ---- synthesis ----
    res_found = sorted({int(m.group(1)) for n in sv if (m := re.match(r"(\d+)x\1/", n))})
    if not res_found or res_found[0] != 4:
        raise CheckpointError("TensorFlow StyleGAN1 synthesis network has no 4x4 block")
    resolution = res_found[-1]
    block_res = [2**k for k in range(2, int(math.log2(resolution)) + 1)]
    if res_found != block_res or int(_kw(skw, "resolution", resolution)) != resolution:
        raise CheckpointError(f"TensorFlow StyleGAN1 blocks {res_found} do not match resolution {skw.get('resolution')}")
    if "ToRGB_lod0/weight" not in sv:
        raise CheckpointError("TensorFlow StyleGAN1 synthesis network has no ToRGB_lod0 (the full-resolution output)")
    conv1 = ["4x4/Conv/weight"] + [f"{r}x{r}/Conv1/weight" for r in block_res[1:]]
    absent = [n for n in conv1 if n not in sv]
    if absent:
        raise CheckpointError(f"TensorFlow StyleGAN1 synthesis network lacks {', '.join(absent[:3])}")
    fused = skw.get("fused_scale", "auto")
    fused_min = 128 if fused in ("auto", None) else (8 if fused else 0)
    blur = skw.get("blur_filter", [1, 2, 1])
    if blur is None:
        raise CheckpointError("StyleGAN1 TensorFlow network without a blur filter is not supported")
    try:
        cfg = StyleGAN1Config(
            z_dim=z_dim, w_dim=w_dim, c_dim=c_dim, img_resolution=resolution,
            img_channels=int(sv["ToRGB_lod0/weight"].shape[3]), channels=tuple(int(sv[n].shape[3]) for n in conv1),
            mapping_layers=n_dense, mapping_layer_features=int(mv["Dense0/weight"].shape[1]) if n_dense > 1 else None,
            mapping_lr_multiplier=float(_kw(mkw, "mapping_lrmul", 0.01)), instance_norm_eps=TF_EPS,
            fused_min_resolution=fused_min, blur_filter=tuple(float(t) for t in blur),
            w_avg_origin="stored (Gs/dlatent_avg)" if "dlatent_avg" in gv else
            "made up: mean of mapping over 10000 z (torch seed 0); the pickle stores none",
            noise_origin="stored (G_synthesis/noise{k})",
        )
        check_fits_state(cfg, {**sv, **{"m/" + k: v for k, v in mv.items()}}, "the TensorFlow StyleGAN1 network")
        G = StyleGAN1Generator(cfg)
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"unsupported TensorFlow StyleGAN1 settings: {safe_text(exc, 160)}") from None
    bc = mkw.get("dlatent_broadcast")
    if bc is not None and int(bc) != cfg.num_ws:
        raise CheckpointError(f"dlatent_broadcast={bc} but the synthesis needs {cfg.num_ws} rows")
    try:
        state, used = _convert(sv, mv, cfg)
    except (ValueError, IndexError) as exc:
        raise CheckpointError(f"a TensorFlow StyleGAN1 variable has an unexpected shape ({exc})") from None
    left = sorted(n for n in set(sv) - used if not re.fullmatch(r"ToRGB_lod\d+/(weight|bias)|lod", n))
    if left:
        raise CheckpointError(f"unexpected TensorFlow StyleGAN1 synthesis variables: {', '.join(left[:4])}")
    avg = gv.get("dlatent_avg")
    state["mapping.w_avg"] = _t(avg.reshape(-1)) if avg is not None else torch.zeros([w_dim])
    load_state_exact(G, state)
    if avg is None:
        G.mapping.w_avg.copy_(mean_w(G))
    return G


def _convert(sv: dict[str, np.ndarray], mv: dict[str, np.ndarray],
             cfg: StyleGAN1Config) -> tuple[dict[str, torch.Tensor], set[str]]:
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in sv:
            raise CheckpointError(f"TensorFlow StyleGAN1 synthesis network lacks {name}")
        used.add(name)
        return sv[name]

    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = _t(mv[f"Dense{i}/weight"].T)
        out[f"mapping.fc{i}.bias"] = _t(mv[f"Dense{i}/bias"])
    if cfg.c_dim:
        out["mapping.label_concat"] = _t(mv["LabelConcat/weight"].T)
    k = 0
    for res in cfg.block_resolutions:
        src, dst = f"{res}x{res}", f"synthesis.b{res}"
        if res == 4:
            const = take(f"{src}/Const/const")
            out[f"{dst}.const"] = _t(const[0] if const.ndim == 4 else const)
            scopes = ((f"{src}/Const", "conv0", False), (f"{src}/Conv", "conv1", True))
        else:
            scopes = ((f"{src}/Conv0_up", "conv0", True), (f"{src}/Conv1", "conv1", True))
        for scope, layer, has_weight in scopes:
            if has_weight:
                out[f"{dst}.{layer}.weight"] = _t(take(f"{scope}/weight").transpose(3, 2, 0, 1))
            out[f"{dst}.{layer}.bias"] = _t(take(f"{scope}/bias"))
            out[f"{dst}.{layer}.noise_strength"] = _t(take(f"{scope}/Noise/weight"))
            out[f"{dst}.{layer}.affine.weight"] = _t(take(f"{scope}/StyleMod/weight").T)
            out[f"{dst}.{layer}.affine.bias"] = _t(take(f"{scope}/StyleMod/bias"))
            noise = take(f"noise{k}")
            out[f"{dst}.{layer}.noise_const"] = _t(noise.reshape(noise.shape[-2:]))
            k += 1
        taps = torch.tensor(cfg.blur_filter, dtype=torch.float32)
        kernel = taps[:, None] * taps[None, :]
        out[f"{dst}.blur_filter"] = kernel / kernel.sum()
    top = cfg.img_resolution
    out[f"synthesis.b{top}.torgb.weight"] = _t(take("ToRGB_lod0/weight").transpose(3, 2, 0, 1))
    out[f"synthesis.b{top}.torgb.bias"] = _t(take("ToRGB_lod0/bias"))
    return out, used
