"""LPIPS perceptual distance on VGG16 features (Zhang et al. 2018, "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric", CVPR; the "lin" variant, v0.1 weights).

For images x, y the distance is (paper, eq. 1)

    d(x, y) = Σ_l  mean_{h,w} ‖ w_l ⊙ (ŷ^l_hw(x) − ŷ^l_hw(y)) ‖²₂

where ŷ^l are the VGG16 activations after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, each
unit-normalized along the channel axis at every pixel, and w_l ≥ 0 are the learned per-channel
weights (a 1×1 convolution without bias, [1, C_l, 1, 1]).

Weights are two plain state dicts, both read through the one budgeted torch door
(:func:`clipstyle.generator.formats.torch_archive.load_torch`: every pickle dry-run, then ``weights_only``):

* the VGG16 ImageNet backbone of torchvision (``features.*`` keys; :data:`VGG16_URL`);
* the LPIPS v0.1 linear layers for VGG (``lin{l}.model.1.weight`` keys; :data:`LPIPS_VGG_URL`).

:func:`load_lpips` fetches them once into the cache (:func:`clipstyle.io.cache.fetch`) or takes local
files; offline, the :class:`~clipstyle.io.cache.DownloadError` tells the user to pass
``--lpips-weights`` or ``--perceptual none``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipstyle.errors import BadFileError
from clipstyle.optimize.precision import model_autocast

__all__ = ["LPIPS", "LPIPSWeightsError", "LPIPS_HINT", "LPIPS_VGG_URL", "VGG16_URL", "build_vgg16_features",
           "load_lpips", "resolve_lpips_weights"]

#: torchvision's VGG16 ImageNet state dict (``VGG16_Weights.IMAGENET1K_V1``).
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
#: The LPIPS v0.1 linear-layer weights for the VGG variant, as published by the paper's authors.
LPIPS_VGG_URL = "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/vgg.pth"
#: What the user is told when the weights cannot be downloaded.
LPIPS_HINT = ("download the VGG16 and LPIPS v0.1 'vgg' weights yourself and pass --lpips-weights DIR_OR_FILES "
              "(a folder holding vgg16-397923af.pth and vgg.pth, or the two files comma-separated), "
              "or use --perceptual none")

#: Index of the last module of each tapped stage in ``vgg16().features``: relu1_2 … relu5_3.
TAP_LAYERS = (3, 8, 15, 22, 29)
CHANNELS = (64, 128, 256, 512, 512)
# The input normalisation the LPIPS v0.1 weights were trained with, for images in [-1, 1]:
# (x − shift) / scale per RGB channel (the ImageNet mean/std re-expressed for that range).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPSWeightsError(BadFileError):
    """LPIPS weight files that are missing, unreadable or not what we expect. ``str()`` is one line."""


def build_vgg16_features() -> nn.Sequential:
    """The convolutional part of torchvision's VGG16 (config "D", no batch norm), random weights.

    Same module indices as ``torchvision.models.vgg16(weights=None).features`` (so its state dict keys
    ``features.{i}.weight`` load directly), truncated after relu5_3 (index 29): the last pooling
    layer is never needed.
    """
    from torchvision.models import vgg

    layers = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    return nn.Sequential(*list(layers.children())[: TAP_LAYERS[-1] + 1])


def _unit_normalize(feat: Tensor, eps: float = 1e-10) -> Tensor:
    """Divide each pixel's feature vector by its L2 norm (channels = dim 1)."""
    return feat / (feat.square().sum(dim=1, keepdim=True).add(eps).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance with a VGG16 backbone, frozen, eval mode.

    Args:
        backbone_state: a torchvision VGG16 state dict (keys ``features.{i}.weight``/``.bias``; other
            keys, e.g. the classifier, are ignored) or the state dict of the features alone (``{i}.weight``).
        linear_state: the LPIPS linear layers: for each stage l in 0–4 a weight of shape ``[1, C_l, 1, 1]``
            (or ``[C_l]``) under a key naming the stage (``lin{l}.…`` or ``lins.{l}.…``). Negative entries
            are clipped to 0 (the published weights are non-negative by construction).

    Call ``lpips(x, y)`` with float images ``[N, 3, H, W]`` in [-1, 1] (either may have batch 1 and is
    broadcast), H, W ≥ 16: returns distances ``[N]`` (float32, ≥ 0 with non-negative weights; 0 for
    identical images). Differentiable in both inputs.

    Raises:
        LPIPSWeightsError: a state dict lacks keys or has the wrong shapes.
    """

    def __init__(self, backbone_state: dict[str, Tensor], linear_state: dict[str, Tensor]) -> None:
        super().__init__()
        self.features = build_vgg16_features()
        self.features.load_state_dict(_backbone_subset(backbone_state, self.features), strict=True)
        for i, w in enumerate(_linear_weights(linear_state)):
            self.register_buffer(f"lin{i}", w.clamp_min(0).reshape(1, CHANNELS[i], 1, 1).to(torch.float32))
        self.register_buffer("shift", torch.tensor(_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).reshape(1, 3, 1, 1))
        for m in self.features.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # tapped activations must not be overwritten
        self.requires_grad_(False)
        self.eval()

    def stage_features(self, x: Tensor) -> list[Tensor]:
        """Unit-normalized activations at the five taps for images ``[N, 3, H, W]`` in [-1, 1]; the VGG
        runs in the loop's precision (:func:`~clipstyle.optimize.precision.model_autocast`), the
        normalization in the buffers' dtype (float32)."""
        h = (x - self.shift) / self.scale
        taps = []
        with model_autocast(x.device):
            for i, layer in enumerate(self.features):
                h = layer(h)
                if i in TAP_LAYERS:
                    taps.append(h)
        return [_unit_normalize(t.to(self.shift.dtype)) for t in taps]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.ndim != 4 or y.ndim != 4 or x.shape[1] != 3 or y.shape[1] != 3 or x.shape[2:] != y.shape[2:]:
            raise ValueError(f"LPIPS needs two image batches [N, 3, H, W] of the same size, "
                             f"got {list(x.shape)} and {list(y.shape)}")
        if min(x.shape[2:]) < 16:
            raise ValueError(f"LPIPS needs images of at least 16×16 pixels, got {list(x.shape[2:])}")
        n = max(x.shape[0], y.shape[0])
        fx = self.stage_features(x.to(self.shift.dtype))
        fy = self.stage_features(y.to(self.shift.dtype))
        total = x.new_zeros([n], dtype=self.shift.dtype)
        for i, (a, b) in enumerate(zip(fx, fy)):
            d = ((a - b).square() * getattr(self, f"lin{i}")).sum(dim=1)  # [N, h, w]
            total = total + d.mean(dim=(1, 2))
        return total


def _backbone_subset(state: dict[str, Tensor], features: nn.Sequential) -> dict[str, Tensor]:
    want = features.state_dict()
    prefixed = any(k.startswith("features.") for k in state)
    out = {}
    for key, ref in want.items():
        src = f"features.{key}" if prefixed else key
        if src not in state:
            raise LPIPSWeightsError(f"the VGG16 weights have no '{src}' (is it torchvision's vgg16 state dict?)")
        value = state[src]
        if not torch.is_tensor(value) or tuple(value.shape) != tuple(ref.shape):
            shape = list(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise LPIPSWeightsError(f"VGG16 weight '{src}' has shape {shape}, expected {list(ref.shape)}")
        out[key] = value.to(torch.float32)
    return out


def _linear_weights(state: dict[str, Tensor]) -> list[Tensor]:
    found: dict[int, Tensor] = {}
    for key, value in state.items():
        m = re.match(r"^(?:module\.)?(?:lin|lins\.)(\d)\b", key)
        if m and key.endswith("weight") and torch.is_tensor(value):
            found[int(m.group(1))] = value
    out = []
    for i, ch in enumerate(CHANNELS):
        if i not in found:
            raise LPIPSWeightsError(f"the LPIPS linear weights have no layer {i} (expected keys like 'lin{i}.model.1.weight')")
        w = found[i]
        if w.numel() != ch:
            raise LPIPSWeightsError(f"LPIPS linear layer {i} has {w.numel()} weights, expected {ch} (is it the 'vgg' variant?)")
        out.append(w.detach().reshape(-1))
    return out


def _load_state(path: Path) -> dict[str, Tensor]:
    from clipstyle.generator.formats.common import CheckpointError
    from clipstyle.generator.formats.safe_pickle import UnsafePickleError
    from clipstyle.generator.formats.torch_archive import load_torch

    try:
        state = load_torch(path)  # the one budgeted door: every pickle dry-run, then weights_only
    except (CheckpointError, UnsafePickleError) as exc:
        reason = " ".join(str(exc)[:400].split())[:200] or type(exc).__name__
        raise LPIPSWeightsError(f"{path} is not a readable torch state dict ({reason})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LPIPSWeightsError(f"{path} does not hold a state dict (found a {type(state).__name__})")
    return state


def _is_backbone(state: dict[str, Any]) -> bool:
    return "features.0.weight" in state or "0.weight" in state


def resolve_lpips_weights(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, *,
                          cache_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                          urls: tuple[str, str] = (VGG16_URL, LPIPS_VGG_URL)) -> list[Path]:
    """Find the two weight files.

    Args:
        spec: ``None`` = download ``urls`` once into the cache (sub-folder ``lpips``); a folder holding
            ``vgg16*.pth`` and ``vgg.pth`` (or ``*lpips*.pth``); a comma-separated string or a sequence of
            the two files (any order: they are told apart by their contents).
        cache_dir, progress: passed to :func:`clipstyle.io.cache.fetch`.
        urls: (VGG16 backbone, LPIPS linear) sources used when ``spec`` is None (a test can pass
            ``file://`` URLs).

    Returns:
        The file paths (unclassified).

    Raises:
        clipstyle.io.cache.DownloadError: a download failed (offline…); the message ends in :data:`LPIPS_HINT`.
        LPIPSWeightsError: a folder without the expected files, or a listed file that does not exist.
    """
    from clipstyle.io.cache import fetch

    if spec is None:
        _require_online(urls, cache_dir)
        return [fetch(url, cache_dir=cache_dir, progress=progress, hint=LPIPS_HINT, subdir="lpips") for url in urls]
    items = [s.strip() for s in str(spec).split(",") if s.strip()] if isinstance(spec, (str, os.PathLike)) \
        else [os.fspath(s) for s in spec]
    if len(items) == 1 and Path(items[0]).expanduser().is_dir():
        folder = Path(items[0]).expanduser()
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".pth", ".pt"))
        backbone = [p for p in files if p.name.lower().startswith("vgg16")]
        linear = [p for p in files if p.name.lower() == "vgg.pth" or "lpips" in p.name.lower()]
        if not backbone or not linear:
            raise LPIPSWeightsError(f"{folder} must hold the VGG16 weights (vgg16-397923af.pth) and the LPIPS "
                                    f"v0.1 linear weights (vgg.pth); found {', '.join(p.name for p in files) or 'nothing'}")
        return [backbone[0], linear[0]]
    paths = []
    for item in items:
        p = Path(item).expanduser()
        if not p.is_file():
            raise LPIPSWeightsError(f"no such LPIPS weight file: {item}")
        paths.append(p)
    if len(paths) != 2:
        raise LPIPSWeightsError(f"--lpips-weights needs a folder or two files (VGG16 and LPIPS 'vgg'), got {len(paths)}")
    return paths


def _require_online(urls: Sequence[str], cache_dir: str | os.PathLike[str] | None) -> None:
    """Offline and not cached: one line naming *every* missing file (not only the first) and ``--lpips-weights``.

    Raises:
        clipstyle.io.cache.DownloadError: some weights are missing from the cache and their host is unreachable.
    """
    from clipstyle.io.cache import DownloadError, cached_path_for, is_url
    from clipstyle.io.offline import offline_reason, reachable

    missing = [u for u in urls if is_url(u) and not cached_path_for(u, cache_dir, "lpips").is_file()]
    offline = [u for u in missing if not reachable(u)]
    if offline:
        names = " and ".join(f"{u.rsplit('/', 1)[-1]} ({u})" for u in missing)
        raise DownloadError(offline[0], f"{offline_reason(offline[0])}; LPIPS needs {names}", LPIPS_HINT)


def load_lpips(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, *,
               device: str | torch.device = "cpu", cache_dir: str | os.PathLike[str] | None = None,
               progress: bool = True, urls: tuple[str, str] = (VGG16_URL, LPIPS_VGG_URL)) -> LPIPS:
    """Build :class:`LPIPS` from downloaded or local weights (see :func:`resolve_lpips_weights`).

    Raises:
        clipstyle.io.cache.DownloadError: offline or a dead URL (message names the URL, ``--lpips-weights``
            and ``--perceptual none``).
        LPIPSWeightsError: missing/unreadable/mismatched files.
    """
    paths = resolve_lpips_weights(spec, cache_dir=cache_dir, progress=progress, urls=urls)
    states = [_load_state(p) for p in paths]
    backbone = [s for s in states if _is_backbone(s)]
    linear = [s for s in states if not _is_backbone(s)]
    if len(backbone) != 1 or len(linear) != 1:
        names = ", ".join(str(p) for p in paths)
        raise LPIPSWeightsError(f"expected one VGG16 state dict and one LPIPS linear state dict, got {names}")
    return LPIPS(backbone[0], linear[0]).to(device)


def downsample_for_lpips(images: Tensor, max_size: int = 256) -> Tensor:
    """Area-downsample ``[N, C, H, W]`` so the longer side is at most ``max_size`` (projection practice:
    the StyleGAN2 projector compares at 256², Karras et al. 2020, Appendix D). Unchanged if small enough."""
    h, w = images.shape[2:]
    if max(h, w) <= max_size:
        return images
    factor = -(-max(h, w) // max_size)
    return F.avg_pool2d(images, kernel_size=factor, stride=factor)
