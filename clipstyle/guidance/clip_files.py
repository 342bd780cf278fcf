"""Checks of the CLIP files a user passes, before open_clip builds or reads anything.

* :func:`check_clip_config`: an open_clip model-config JSON is data; a 200-byte file can ask for a
  transformer of 10⁶ channels. Every number is checked (an integer or a finite float in a plausible range)
  and the parameter count is estimated from the config (the formulas below) and refused over the budget
  *before* the model is built.
* :func:`check_clip_checkpoint`: a local checkpoint goes through the same budgeted checks as every torch
  file (:func:`clipstyle.generator.formats.torch_archive.scan_torch_archive`: every pickle dry-run), a
  safetensors header is checked against the file, a NumPy archive's members against their declared sizes,
  and TorchScript archives are refused (reading them means ``torch.jit.load``, which compiles code from the
  file). open_clip then reads the checked file with ``torch.load(weights_only=True)``.

Parameter estimate (float32 weights, Radford et al. 2021 architectures): a transformer of width ``W``,
``L`` layers and MLP ratio ``r`` has ``L·(4 + 2r)·W²`` weights in its blocks; a ViT adds ``3·P²·W`` (patch
embedding) and ``(I/P)²·W`` (positions); the text tower adds ``V·W + C·W`` (token and position
embeddings); a modified ResNet of base width ``w`` has about ``17·Σᵢ lᵢ·(w·2ⁱ)²`` in its bottlenecks plus
``4·(32w)²`` in its attention pool.
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import Any

__all__ = ["ClipFileError", "check_clip_checkpoint", "check_clip_config", "estimate_clip_parameters"]

#: Ranges of the numbers of a model config (inclusive).
_INT_RANGES = {
    "embed_dim": (1, 16384), "width": (1, 16384), "layers": (0, 256), "heads": (1, 1024), "head_width": (1, 4096),
    "patch_size": (1, 1024), "image_size": (1, 4096), "context_length": (1, 16384), "vocab_size": (1, 1_000_000),
    "output_dim": (1, 16384), "n_queries": (1, 4096), "attn_pooler_heads": (1, 1024),
}
_FLOAT_RANGES = {"mlp_ratio": (0.0, 64.0), "ls_init_value": (-1e3, 1e3), "patch_dropout": (0.0, 1.0),
                 "init_logit_scale": (-100.0, 100.0), "init_logit_bias": (-1e3, 1e3)}


class ClipFileError(ValueError):
    """A CLIP config or checkpoint refused by these checks (one line); ``clip.py`` raises it as its GuidanceError."""


def _guidance_error(message: str) -> Exception:
    return ClipFileError(message)


def _walk_numbers(value: Any, where: str, depth: int = 0) -> None:
    """Every number in the config: finite, and inside its range when the key is known."""
    if depth > 8:
        raise _guidance_error(f"{where}: the config is nested too deeply")
    if isinstance(value, dict):
        if len(value) > 256:
            raise _guidance_error(f"{where}: the config has too many keys")
        for k, v in value.items():
            _check_number(str(k), v, f"{where}.{k}")
            _walk_numbers(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        if len(value) > 256:
            raise _guidance_error(f"{where}: a list of {len(value)} items in the config")
        for i, v in enumerate(value):
            _check_number("", v, f"{where}[{i}]")
            _walk_numbers(v, f"{where}[{i}]", depth + 1)


def _check_number(key: str, v: Any, where: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    if isinstance(v, float) and not math.isfinite(v):
        raise _guidance_error(f"{where} is {v}; every number of a CLIP config must be finite")
    if key in _INT_RANGES:
        lo, hi = _INT_RANGES[key]
        if not isinstance(v, int) or not lo <= v <= hi:
            raise _guidance_error(f"{where}={v} is outside {lo}..{hi}; refused before building the model")
    elif key in _FLOAT_RANGES:
        lo, hi = _FLOAT_RANGES[key]
        if not lo <= float(v) <= hi:
            raise _guidance_error(f"{where}={v} is outside {lo}..{hi}; refused before building the model")
    elif abs(v) > 1e7:
        raise _guidance_error(f"{where}={v} is implausibly large; refused before building the model")


def _int(cfg: dict, key: str, default: int) -> int:
    v = cfg.get(key, default)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def estimate_clip_parameters(model_cfg: dict[str, Any]) -> int:
    """A close estimate of the weights an open_clip model config builds (module doc formulas).

    Args:
        model_cfg: ``embed_dim``, ``vision_cfg``, ``text_cfg`` as in open_clip's JSON configs.

    Returns:
        The number of parameters (Python int, no overflow).
    """
    embed = _int(model_cfg, "embed_dim", 512)
    vision = model_cfg.get("vision_cfg") if isinstance(model_cfg.get("vision_cfg"), dict) else {}
    text = model_cfg.get("text_cfg") if isinstance(model_cfg.get("text_cfg"), dict) else {}
    total = 0
    layers = vision.get("layers", 12)
    width = _int(vision, "width", 768)
    image = _int(vision, "image_size", 224)
    if isinstance(layers, (list, tuple)):  # modified ResNet
        total += sum(17 * int(n) * (width * 2 ** i) ** 2 for i, n in enumerate(layers) if isinstance(n, int))
        total += 4 * (32 * width) ** 2 + (image // 32) ** 2 * 32 * width + 32 * width * embed
    else:
        r = float(vision.get("mlp_ratio", 4.0) or 4.0)
        patch = max(_int(vision, "patch_size", 16), 1)
        total += int(_int(vision, "layers", 12) * (4 + 2 * r) * width ** 2)
        total += 3 * patch ** 2 * width + (image // patch) ** 2 * width + width * embed
    tw = _int(text, "width", 512)
    tr = float(text.get("mlp_ratio", 4.0) or 4.0)
    total += int(_int(text, "layers", 12) * (4 + 2 * tr) * tw ** 2)
    total += (_int(text, "vocab_size", 49408) + _int(text, "context_length", 77)) * tw + tw * embed
    return total


def check_clip_config(model_cfg: dict[str, Any], shown: str, max_bytes: int | None = None) -> int:
    """Refuse a model config with a non-finite or out-of-range number, or one that would build more than
    ``max_bytes`` of float32 weights (default: the checkpoint budget, ``CLIPSTYLE_MAX_CHECKPOINT_BYTES``, 8 GB).

    Returns:
        The estimated parameter count.

    Raises:
        GuidanceError: one line naming the config and the value (nothing was built).
    """
    from clipstyle.generator.formats.budget import limits

    _walk_numbers(model_cfg, shown)
    n = estimate_clip_parameters(model_cfg)
    budget = max_bytes if max_bytes is not None else limits().max_tensor_bytes
    if 4 * n > budget:
        raise _guidance_error(f"CLIP model config '{shown}' builds about {n / 1e9:.2f} G parameters "
                              f"({4 * n / 1e9:.1f} GB), over the {budget / 1e9:.1f} GB budget; refused before "
                              f"building it (set CLIPSTYLE_MAX_CHECKPOINT_BYTES to raise it)")
    return n


def check_clip_checkpoint(path: str, shown: str) -> None:
    """The checks every CLIP checkpoint passes before open_clip reads it (module doc).

    Raises:
        GuidanceError: a TorchScript archive, or a file the budgeted checks refuse (one line).
    """
    from clipstyle.generator.formats.common import CheckpointError
    from clipstyle.generator.formats.native import check_safetensors_header
    from clipstyle.generator.formats.torch_archive import scan_torch_archive

    with open(path, "rb") as f:
        head = f.read(4)
    try:
        if head == b"PK\x03\x04":
            with zipfile.ZipFile(path) as archive:
                names = [n.lower() for n in archive.namelist()]
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                raise _guidance_error(
                    f"CLIP checkpoint '{shown}' is a TorchScript archive (like OpenAI's original release), which is "
                    "not loaded for safety; use open_clip weights (.bin/.safetensors, e.g. from the HF hub) instead")
            if not any(n.endswith("data.pkl") for n in names):  # a NumPy archive (big_vision weights)
                from clipstyle.generator.formats.budget import limits
                from clipstyle.io.arrays import ArrayFileError, zip_entries

                lim = limits()
                with zipfile.ZipFile(path) as archive:
                    try:
                        zip_entries(archive, shown, size=os.path.getsize(path), max_entries=lim.max_tensors,
                                    max_inflated_bytes=lim.max_inflated_bytes, max_inflate_ratio=lim.max_inflate_ratio)
                    except ArrayFileError as exc:
                        raise CheckpointError(str(exc)) from None
                return
        if str(path).lower().endswith(".safetensors"):
            check_safetensors_header(path)
        elif str(path).lower().endswith(".npy"):
            from clipstyle.io.arrays import ArrayFileError, read_npy

            try:
                read_npy(path)
            except ArrayFileError as exc:
                raise CheckpointError(str(exc)) from None
        else:
            scan_torch_archive(path, what=f"CLIP checkpoint '{shown}'")
    except (CheckpointError, zipfile.BadZipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise _guidance_error(f"CLIP checkpoint not found: '{shown}'") from None
        raise _guidance_error(f"CLIP checkpoint '{shown}' refused: {' '.join(str(exc)[:400].split())[:240]}") \
            from None
