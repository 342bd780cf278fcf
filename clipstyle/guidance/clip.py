"""A frozen open_clip model with differentiable, tensor-only preprocessing.

The model is CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", arXiv:2103.00020) as implemented by open_clip. ``open_clip`` is imported lazily, when a
:class:`CLIPGuide` is built, so importing this module stays cheap.
"""

from __future__ import annotations

import difflib
import json
import os
import pickle
import urllib.parse
from copy import deepcopy
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from clipstyle.guidance.errors import GuidanceError  # noqa: F401  (re-exported)
from clipstyle.guidance.layout import use_sequence_first
from clipstyle.io.offline import OfflineError
from clipstyle.optimize.precision import model_autocast

__all__ = ["CLIPGuide", "GuidanceError"]

_NO_WEIGHTS = {"", "none", "random"}
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz", ".npy")


def _first_line(e: BaseException) -> str:
    text = str(e)[:4000].strip()
    if "Weights only load failed" in text:  # torch's multi-paragraph refusal of a global: one line
        import re

        m = re.search(r"GLOBAL ([\w.]+)", text)
        name = f" {m.group(1)}" if m else ""
        return (f"its pickle names the global{name}, which is not on torch's weights-only allow-list "
                f"(nothing from the file ran)")
    return text.splitlines()[0][:300] if text else type(e).__name__


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith((".", "~"))
        or value.lower().endswith(_CHECKPOINT_SUFFIXES)
    )


def _is_config_path(model: str, known: Sequence[str]) -> bool:
    if model.lower().endswith(".json"):
        return True
    return model not in known and os.path.isfile(os.path.expanduser(model))


def _check_checkpoint_file(path: str, shown: str) -> None:
    """Refuse what is no CLIP checkpoint by its content, in one line, before open_clip reads it: a file that is
    neither a torch archive nor a safetensors file (``--clip-pretrained photo.png`` is "a PNG image, not a CLIP
    checkpoint"); then every checkpoint passes the budgeted checks of :mod:`clipstyle.guidance.clip_files` (every
    pickle dry-run, safetensors headers, NumPy archives; TorchScript archives refused: reading them means
    ``torch.jit.load``, which compiles code from the file)."""
    from clipstyle.generator.loader import sniff_format
    from clipstyle.guidance.clip_files import ClipFileError, check_clip_checkpoint

    with open(path, "rb") as f:
        head = f.read(16)
    kind = sniff_format(head)
    legacy_torch = head[:1] == b"\x80" and head[2:3] == b"\x8a"  # torch.save's pickled magic number first
    if kind == "unknown" or (kind == "pickle" and not legacy_torch):
        what = ("a PNG image" if head.startswith(b"\x89PNG") else "a JPEG image" if head.startswith(b"\xff\xd8")
                else "a Python pickle (not a torch archive)" if kind == "pickle" else
                "neither a torch archive nor a safetensors file")
        raise GuidanceError(f"--clip-pretrained {shown} is {what}, not a CLIP checkpoint")
    try:
        check_clip_checkpoint(path, shown)
    except ClipFileError as exc:
        raise GuidanceError(str(exc)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


#: Largest model-config JSON read (bytes).
MAX_CONFIG_BYTES = 1 << 20


def _read_config(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a model-config JSON → (model_cfg, preprocess overrides).

    Accepts open_clip's flat model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) or the
    ``open_clip_config.json`` layout (``{"model_cfg": ..., "preprocess_cfg": ...}``).
    """
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise GuidanceError(f"CLIP model config not found: '{path}'")
    try:
        if file.stat().st_size > MAX_CONFIG_BYTES:
            raise GuidanceError(f"CLIP model config '{path}' is over {MAX_CONFIG_BYTES >> 20} MB; not a model config")
        data = json.loads(file.read_text(encoding="utf-8"), parse_constant=_refuse_constant)  # no NaN/Infinity
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GuidanceError(f"cannot read CLIP model config '{path}': {_first_line(e)}") from e
    if not isinstance(data, dict):
        raise GuidanceError(f"CLIP model config '{path}' is not a JSON object")
    model_cfg = data.get("model_cfg", data)
    preprocess = data.get("preprocess_cfg", {}) or {}
    if not isinstance(model_cfg, dict) or not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise GuidanceError(f"'{path}' is not an open_clip model config (needs embed_dim, vision_cfg and text_cfg)")
    model_cfg = {k: v for k, v in deepcopy(model_cfg).items() if k != "preprocess_cfg"}
    return model_cfg, dict(preprocess)


class CLIPGuide:
    """A frozen (``requires_grad_(False)``), eval-mode open_clip model used as a differentiable critic.

    Args:
        model: an open_clip model name (``"ViT-B-32"``, ``"ViT-L-14"``, ...; see
            ``open_clip.list_models()``), or a path to an open_clip model-config JSON (for custom or
            tiny test models). A JSON is built directly from its dict; open_clip's global model
            registry is left untouched.
        pretrained: an open_clip pretrained tag for that model (``"openai"``,
            ``"laion2b_s34b_b79k"``, ...), a path to a local checkpoint file (``.pt``/``.bin``/
            ``.safetensors``; loaded with ``weights_only=True``), or ``None``/``"none"`` for random
            weights. Tags cannot be used with a model-config JSON. A local checkpoint of weights
            trained with QuickGELU (OpenAI's) needs the ``-quickgelu`` model name, e.g.
            ``ViT-B-32-quickgelu``; TorchScript archives are refused (see below).
        device: torch device for the model and every tensor it returns.
        cache_dir: optional download cache for pretrained tags (open_clip's default otherwise).
        init_seed: seed of the initial weights, i.e. of the whole model when ``pretrained`` is None
            (drawn in a forked RNG: reproducible across processes, global RNG state untouched).

    A tag whose weights are already in the Hugging Face cache is loaded from there without any
    network request. When a tag asks for QuickGELU (e.g. the OpenAI weights), the model is built
    with QuickGELU, and the tag's mean/std/interpolation become the preprocessing config.

    Raises:
        GuidanceError: unknown model name; missing/unreadable config JSON; unknown tag; missing
            checkpoint path; weights that need a download which fails (e.g. offline); a checkpoint
            that does not fit the model or is a TorchScript archive.

    Attributes:
        model: the open_clip module. tokenizer: its tokenizer (list[str] → LongTensor [T, ctx]).
        input_size: side S of the square model input. embed_dim: D, the joint embedding width.
        mean, std: float32 tensors [1, 3, 1, 1] on ``device`` (normalization of [0, 1] RGB).
        interpolation: "bicubic" or "bilinear". resize_mode: "shortest", "longest" or "squash".
    """

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = "openai",
        device: str | torch.device = "cpu",
        *,
        cache_dir: str | None = None,
        init_seed: int = 0,
    ) -> None:
        import open_clip  # lazy: heavy import

        self.device = torch.device(device)
        model = str(model)
        if pretrained is not None:
            pretrained = str(pretrained).strip()
            if pretrained.lower() in _NO_WEIGHTS:
                pretrained = None
        # Initial (random) weights come from a fixed seed in a forked CPU RNG: the same model and
        # pretrained=None give the same network in every process, and the caller's RNG is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            if _is_config_path(model, open_clip.list_models()):
                clip, tokenizer, model_cfg = self._build_from_config(open_clip, model, pretrained)
            else:
                clip, tokenizer, model_cfg = self._build_named(open_clip, model, pretrained, cache_dir)
        self.model_name = model
        self.pretrained = pretrained

        clip = clip.to(self.device).eval().requires_grad_(False)
        use_sequence_first(clip)  # same numbers, 1.4× (float32) to 5× (bf16) faster on the CPU
        self.model = clip
        self.tokenizer = tokenizer
        self.embed_dim = int(model_cfg["embed_dim"])

        pp = open_clip.get_model_preprocess_cfg(clip)
        size = pp.get("size", 224)
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if height != width:
            raise GuidanceError(f"CLIP model '{model}' has a non-square input {height}x{width}; not supported")
        self.input_size = int(height)
        self.mean = torch.tensor(pp["mean"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(pp["std"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.interpolation = "bilinear" if pp.get("interpolation") == "bilinear" else "bicubic"
        self.resize_mode = pp.get("resize_mode", "shortest")
        self.fill_value = float(pp.get("fill_color", 0)) / 255.0

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _build_from_config(open_clip, path: str, pretrained: str | None):
        from open_clip.transform import PreprocessCfg, merge_preprocess_dict

        from clipstyle.guidance.clip_files import ClipFileError, check_clip_config

        model_cfg, preprocess_overrides = _read_config(path)
        try:
            check_clip_config(model_cfg, path)  # every number finite and in range, the size estimated: before building
        except ClipFileError as exc:
            raise GuidanceError(str(exc)) from None
        cfg = deepcopy(model_cfg)
        text_cfg, vision_cfg = cfg["text_cfg"], cfg["vision_cfg"]
        is_hf_text = "hf_model_name" in text_cfg
        if is_hf_text:
            text_cfg["hf_model_pretrained"] = False  # weights come from `pretrained` or stay random
        if "timm_model_name" in vision_cfg:
            vision_cfg["timm_model_pretrained"] = False
        custom_text = bool(cfg.pop("custom_text", False)) or is_hf_text
        if custom_text:
            cls = open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
        else:
            cls = open_clip.CLIP
        try:
            clip = cls(**cfg)
        except Exception as e:  # bad keys/values in the user's JSON
            raise GuidanceError(f"invalid CLIP model config '{path}': {type(e).__name__}: {_first_line(e)}") from e

        if pretrained is not None:
            ckpt = os.path.expanduser(pretrained)
            if not os.path.isfile(ckpt):
                if _looks_like_path(pretrained):
                    raise GuidanceError(f"CLIP checkpoint not found: '{pretrained}'")
                raise GuidanceError(
                    f"pretrained tag '{pretrained}' cannot be used with a model-config JSON; "
                    "pass a local checkpoint path with --clip-pretrained, or 'none' for random weights"
                )
            _check_checkpoint_file(ckpt, pretrained)
            try:
                open_clip.load_checkpoint(clip, ckpt, strict=True, weights_only=True)
            except pickle.UnpicklingError:  # torch's weights-only refusal: never its advice to load unsafely
                raise GuidanceError(f"--clip-pretrained {pretrained} is not a CLIP checkpoint of plain tensors (it "
                                    "holds other objects, which are not loaded, for safety)") from None
            except Exception as e:
                raise GuidanceError(
                    f"could not load CLIP checkpoint '{pretrained}' into '{path}': {_first_line(e)}"
                ) from e

        preprocess = merge_preprocess_dict(PreprocessCfg(), preprocess_overrides)
        preprocess["size"] = clip.visual.image_size
        open_clip.set_model_preprocess_cfg(clip, preprocess)

        try:
            if text_cfg.get("hf_tokenizer_name"):
                from open_clip.tokenizer import HFTokenizer

                tokenizer = HFTokenizer(
                    text_cfg["hf_tokenizer_name"],
                    context_length=text_cfg.get("context_length", 77),
                    tokenizer_mode=text_cfg.get("tokenizer_mode"),
                    **text_cfg.get("tokenizer_kwargs", {}),
                )
            else:
                tokenizer = open_clip.SimpleTokenizer(
                    context_length=text_cfg.get("context_length", 77), **text_cfg.get("tokenizer_kwargs", {})
                )
        except Exception as e:
            raise GuidanceError(
                f"cannot build the tokenizer for CLIP model config '{path}': {_first_line(e)}"
            ) from e
        return clip, tokenizer, model_cfg

    @staticmethod
    def _build_named(open_clip, model: str, pretrained: str | None, cache_dir: str | None):
        name = model.replace("/", "-")
        model_cfg = open_clip.get_model_config(name)
        if model_cfg is None:
            known = open_clip.list_models()
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            shown = close or [m for m in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50") if m in known]
            raise GuidanceError(
                f"unknown CLIP model '{model}'; known: {', '.join(shown)}, ... "
                f"({len(known)} in all, see open_clip.list_models()) (or pass a model-config .json)"
            )

        kwargs: dict[str, Any] = {}
        if pretrained is None:
            checkpoint = None
        elif os.path.isfile(os.path.expanduser(pretrained)):
            checkpoint = os.path.expanduser(pretrained)
            _check_checkpoint_file(checkpoint, pretrained)
        else:
            tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
            if not tag_cfg:
                if _looks_like_path(pretrained):
                    raise GuidanceError(f"CLIP checkpoint not found: '{pretrained}'")
                tags = open_clip.list_pretrained_tags_by_model(name)
                raise GuidanceError(
                    f"unknown pretrained tag '{pretrained}' for CLIP model '{model}'; known tags: "
                    f"{', '.join(tags) or '(none)'} (or pass a local checkpoint path with --clip-pretrained)"
                )
            checkpoint = _fetch_tag(open_clip, tag_cfg, model, pretrained, cache_dir)
            _check_checkpoint_file(checkpoint, pretrained)  # downloaded weights pass the same checks
            kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
            kwargs["force_preprocess_cfg"] = {
                k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg
            }
        try:
            clip = open_clip.create_model(name, pretrained=checkpoint, device="cpu", **kwargs)
        except pickle.UnpicklingError:  # torch's weights-only refusal: never its advice to load unsafely
            raise GuidanceError(f"--clip-pretrained {pretrained} is not a CLIP checkpoint of plain tensors (it "
                                "holds other objects, which are not loaded, for safety)") from None
        except Exception as e:
            raise GuidanceError(
                f"could not load CLIP weights '{pretrained}' into model '{model}': {_first_line(e)}"
            ) from e
        try:
            tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:
            raise GuidanceError(f"cannot load the tokenizer for CLIP model '{model}': {_first_line(e)}") from e
        return clip, tokenizer, model_cfg

    # ------------------------------------------------------------------ differentiable API
    def preprocess(self, images: Tensor) -> Tensor:
        """Map generator images to normalized CLIP input, differentiably (no PIL).

        Args:
            images: float tensor [N, 3, H, W], nominal range [-1, 1].

        Returns:
            float tensor [N, 3, S, S] with S = ``input_size``: ``((x + 1) / 2 − mean) / std``, resized
            with antialiased ``interpolation`` (a no-op when H = W = S). Non-square inputs follow the
            model's ``resize_mode``: "shortest" (scale the short side to S, center-crop), "longest"
            (scale the long side, pad with ``fill_color``) or "squash" (stretch).

        Raises:
            GuidanceError: ``images`` is not [N, 3, H, W].
        """
        _check_images(images)
        x = images.to(self.device) * 0.5 + 0.5
        s = self.input_size
        h, w = x.shape[-2:]
        if (h, w) != (s, s):
            if h == w or self.resize_mode == "squash":
                x = self._resize(x, (s, s))
            elif self.resize_mode == "longest":
                scale = s / max(h, w)
                nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
                x = self._resize(x, (nh, nw))
                top, left = (s - nh) // 2, (s - nw) // 2
                x = F.pad(x, (left, s - nw - left, top, s - nh - top), value=self.fill_value)
            else:  # "shortest", sizes and crop offsets rounded like torchvision's Resize + CenterCrop
                nh, nw = (s, int(s * w / h)) if h < w else (int(s * h / w), s)
                x = self._resize(x, (nh, nw))
                top, left = int(round((nh - s) / 2.0)), int(round((nw - s) / 2.0))
                x = x[:, :, top : top + s, left : left + s]
        return (x - self.mean) / self.std

    def _resize(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)

    def encode_image(self, images: Tensor) -> Tensor:
        """CLIP image embeddings, differentiable w.r.t. ``images``.

        Args:
            images: float tensor [N, 3, H, W] in [-1, 1] (any H, W; see :meth:`preprocess`).

        Returns:
            float32 tensor [N, D] (D = ``embed_dim``), each row L2-normalized. Inside
            :func:`clipstyle.optimize.precision.model_precision` the image tower runs in that precision
            (bf16/fp16 autocast, TF32); the preprocessing and the normalization stay float32.
        """
        x = self.preprocess(images)
        with model_autocast(self.device):
            features = self.model.encode_image(x)
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str] | str) -> Tensor:
        """CLIP text embeddings (no gradient).

        Args:
            texts: T strings (a single string counts as T = 1); longer texts are truncated to the
                model's context length by the tokenizer.

        Returns:
            float32 tensor [T, D] on ``device``, each row L2-normalized.

        Raises:
            GuidanceError: ``texts`` is empty.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise GuidanceError("encode_text needs at least one text")
        tokens = self.tokenizer(texts).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def __repr__(self) -> str:
        return (
            f"CLIPGuide(model={self.model_name!r}, pretrained={self.pretrained!r}, "
            f"input_size={self.input_size}, embed_dim={self.embed_dim}, device={str(self.device)!r})"
        )


def _fetch_tag(open_clip, tag_cfg: dict, model: str, tag: str, cache_dir: str | None) -> str:
    """Local path of a pretrained tag's weights: the HF cache first (no network), else download."""
    if tag_cfg.get("file"):
        return tag_cfg["file"]
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo_id, filename = os.path.split(hub)  # "org/repo/" → ("org/repo", "")
            if not filename:
                candidates = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            else:
                stem, ext = os.path.splitext(filename)
                candidates = ([stem + ".safetensors"] if ext in (".bin", ".pth") else []) + [filename]
            for name in candidates:
                hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
    _require_online(tag_cfg, model, tag)
    try:
        path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as e:
        raise GuidanceError(
            f"could not download CLIP weights '{tag}' for model '{model}' (offline?); "
            "pass a local checkpoint path with --clip-pretrained PATH"
        ) from e
    if not path or not os.path.isfile(path):
        raise GuidanceError(
            f"CLIP weights '{tag}' for model '{model}' are not available; "
            "pass a local checkpoint path with --clip-pretrained PATH"
        )
    return path


class CLIPWeightsOffline(OfflineError, GuidanceError):
    """CLIP weights must be downloaded while offline: a GuidanceError for callers, exit code 1 for the CLI."""


def _require_online(tag_cfg: dict, model: str, tag: str) -> None:
    """Offline (one quick probe, :mod:`clipstyle.io.offline`): one line naming the file and ``--clip-pretrained``.

    Raises:
        GuidanceError (also an OfflineError, exit 1): the weights are not cached and the hub/CDN cannot be reached.
    """
    from clipstyle.io.offline import offline_reason, reachable

    hub = str(tag_cfg.get("hf_hub", "") or "")
    source = f"https://huggingface.co/{hub.rstrip('/')}" if hub else str(tag_cfg.get("url", "") or "")
    if not source or reachable(source):
        return
    filename = os.path.basename(hub) if hub and not hub.endswith("/") else "open_clip_pytorch_model.bin"
    if not hub:
        filename = os.path.basename(urllib.parse.urlparse(source).path) or filename
    quick = "-quickgelu" if tag_cfg.get("quick_gelu") else ""
    raise CLIPWeightsOffline(
        f"cannot download the CLIP weights '{tag}' for model '{model}' ({filename} from {source}): "
        f"{offline_reason(source)}; download that file elsewhere and pass --clip-pretrained PATH"
        + (f" together with --clip-model {model.replace('/', '-')}{quick} (the OpenAI weights use QuickGELU)"
           if quick else "")
    )


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise GuidanceError(f"expected images [N, 3, H, W] in [-1, 1], got {shape}")
