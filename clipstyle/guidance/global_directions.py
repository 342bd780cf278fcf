"""Channel relevance in CLIP space for StyleCLIP's global directions (Patashnik et al. 2021, "StyleCLIP:
Text-Driven Manipulation of StyleGAN Imagery", §6), and the published relevance files.

For every StyleSpace channel ``c`` and each of ``N`` sampled images with styles ``s_n``, the image is rendered
twice with only that channel moved, ``s_n ± k·σ_c·e_c`` (σ_c: the channel's standard deviation, paper: k = 5,
N = 100 pairs); with ``E`` the unit CLIP image embedding,

    ``Δi_c = normalize( Σ_n E(G(s_n + kσ_c e_c)) − E(G(s_n − kσ_c e_c)) )``   ``[D]``,

the mean change of the embedding, scaled to unit length, so ``R_c = Δi_c · Δt`` is a cosine (StyleCLIP's
relevance of the channel to the text direction ``Δt``).

The computation renders ``2·N·C`` images (C = 6048 for FFHQ-1024 StyleGAN2): it runs in batches of
``2·M`` images (M channels of one base image at a time), shows progress through a callback, and writes its
partial sums atomically to a cache file (keyed by the network's weights, the CLIP model and the settings)
every ``checkpoint_seconds``, so a run stopped by Ctrl-C, ``stop()`` or a kill resumes where it was.

Published files: StyleCLIP's ``fs3.npy`` and HyperStyle's ``delta_i_c.npy`` hold ``Δi_c`` as float32
``[6048, 512]``: one row per conv (non-toRGB) channel of an FFHQ-1024 StyleGAN2, in network order (4² conv,
then conv0 and conv1 of every resolution 8² … 1024²), for CLIP ViT-B/32. :func:`read_published` reads such a
file for any network whose conv-only layout has as many channels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipstyle.errors import BadFileError, UsageError, interrupt_requested
from clipstyle.generator.stylespace import (
    StyleLayer,
    flatten_styles,
    style_layers,
    unflatten_styles,
)

__all__ = [
    "Relevance",
    "RelevanceConfig",
    "RelevanceFileError",
    "compute_relevance",
    "network_hash",
    "read_published",
    "read_relevance",
    "relevance_cache_path",
]

CACHE_SUBDIR = "global_directions"


class RelevanceFileError(BadFileError):
    """A relevance file (ours or published) that cannot be used with this network/CLIP model (one line)."""


@dataclass(frozen=True)
class RelevanceConfig:
    """Settings of the relevance computation (all part of the cache key except ``batch`` and the timing).

    Attributes:
        samples: N, images per channel (StyleCLIP: 100 pairs).
        k: the perturbation in standard deviations (StyleCLIP: 5).
        seed: seed of the sampled images and of the statistics.
        truncation: ψ of the sampled images.
        include_torgb: also the toRGB channels (StyleCLIP: conv channels only).
        stat_samples: samples of the channel statistics σ_c.
        batch: images per forward pass (≥ 2: ``batch // 2`` channels of one image, each moved both ways).
        precision: ``fp32``, or ``fp16``/``bf16`` autocast for the renders and CLIP (GPUs; part of the cache key).
        checkpoint_seconds: write the partial result at most this often.
    """

    samples: int = 100
    k: float = 5.0
    seed: int = 0
    truncation: float = 1.0
    include_torgb: bool = False
    stat_samples: int = 10_000
    batch: int = 32
    precision: str = "fp32"
    checkpoint_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        if not self.k > 0:
            raise UsageError(f"--k must be > 0, got {self.k}")
        if self.batch < 2:
            raise UsageError(f"--batch must be >= 2, got {self.batch}")
        if self.stat_samples < 2:
            raise UsageError(f"--stat-samples must be >= 2, got {self.stat_samples}")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise UsageError(f"--relevance-precision must be fp32, fp16 or bf16, got {self.precision!r}")

    def key(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("batch"), d.pop("checkpoint_seconds")
        return d


@dataclass(frozen=True)
class Relevance:
    """``Δi_c`` of the channels of ``layers``.

    Attributes:
        delta_i: float32 ``[C, D]`` (unit rows; zero rows for channels without effect or not yet computed).
        done: bool ``[C]``: channels computed (all True when complete).
        layers: the S layout of the rows (conv-only or with toRGB).
        std: float32 ``[C_full]`` σ of every S channel (full layout, toRGB included).
        source: where it came from (cache file, published file).
    """

    delta_i: torch.Tensor
    done: torch.Tensor
    layers: tuple[StyleLayer, ...]
    std: torch.Tensor
    source: str = ""

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def full(self, G: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(delta_i [C_full, D], covered bool [C_full])`` in the full S layout of ``G`` (zero rows elsewhere)."""
        full = style_layers(G)
        pos = {l.name: l.offset for l in full}
        total = sum(l.width for l in full)
        out = torch.zeros(total, self.delta_i.shape[1])
        covered = torch.zeros(total, dtype=torch.bool)
        for l in self.layers:
            o = pos[l.name]
            out[o:o + l.width] = self.delta_i[l.offset:l.offset + l.width]
            covered[o:o + l.width] = self.done[l.offset:l.offset + l.width]
        return out, covered


def network_hash(G: Any) -> str:
    """SHA-256 (hex, 16 chars) of the generator's kind, config and every parameter/buffer, in name order."""
    h = hashlib.sha256(f"{G.kind}|{G.config!r}".encode())
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _guide_id(guide: Any) -> str:
    name, pre = str(getattr(guide, "model_name", "?")), getattr(guide, "pretrained", None)
    if pre is not None and not Path(str(pre)).exists():
        return f"{name}|{pre}"
    h = hashlib.sha256(f"{name}|{pre}".encode())  # random or local weights: their values are the identity
    for k, t in sorted(guide.model.state_dict().items()):
        h.update(k.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return f"{name}|{h.hexdigest()[:16]}"


def relevance_cache_path(G: Any, guide: Any, cfg: RelevanceConfig, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/global_directions/<network hash>-<key hash>.npz`` for this network, CLIP model and settings."""
    from clipstyle.io.cache import cache_root

    key = json.dumps({"clip": _guide_id(guide), **cfg.key()}, sort_keys=True)
    return cache_root(cache_dir) / CACHE_SUBDIR / f"{network_hash(G)}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def _sample(G: Any, cfg: RelevanceConfig) -> torch.Tensor:
    from clipstyle.latents.stylespace import sample_ws

    return sample_ws(G, cfg.samples, torch.Generator().manual_seed(int(cfg.seed) + 1), cfg.truncation)


def _load_partial(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            sums, done = f["sums"], f["done"]
    except Exception:  # noqa: BLE001 - a missing or damaged checkpoint: start over
        return None
    if sums.shape != shape or done.shape != (shape[0],):
        return None
    return sums.astype(np.float64), done.astype(bool)


@torch.no_grad()
def compute_relevance(G: Any, guide: Any, cfg: RelevanceConfig = RelevanceConfig(), *,
                      cache_dir: str | Path | None = None, path: str | Path | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      stop: Callable[[], bool] | None = None, noise_mode: str = "const") -> Relevance:
    """``Δi_c`` of every channel (see the module docstring), resumed from and saved to the cache.

    Args:
        G: generator; guide: :class:`~clipstyle.guidance.CLIPGuide` (any device; images are moved to it).
        cfg: :class:`RelevanceConfig`.
        cache_dir: cache root (default ``$CLIPSTYLE_CACHE`` or the platform's); ``path`` overrides the file.
        progress: ``progress(channels done, channels total)`` after every group of channels.
        stop: polled between groups; True (or Ctrl-C) saves the partial result and returns it (``done`` tells).
        noise_mode: of the renders (``const``: the pairs differ only in the channel).

    Returns:
        :class:`Relevance` (``complete`` unless stopped), ``source`` = the cache file.
    """
    from clipstyle.io.files import atomic_save_npz
    from clipstyle.latents.stylespace import style_statistics

    path = Path(path) if path is not None else relevance_cache_path(G, guide, cfg, cache_dir)
    layers = style_layers(G, cfg.include_torgb)
    full = style_layers(G)
    full_pos = {l.name: l.offset for l in full}
    cov_to_full = torch.cat([torch.arange(full_pos[l.name], full_pos[l.name] + l.width) for l in layers])
    C, D = int(cov_to_full.numel()), int(guide.embed_dim)
    stats = style_statistics(G, cfg.stat_samples, cfg.seed, cfg.truncation)
    std = stats.std
    state = _load_partial(path, (C, D))
    sums, done = state if state is not None else (np.zeros((C, D)), np.zeros(C, dtype=bool))
    dev = G.w_avg.device
    ws = _sample(G, cfg)                                                  # [N, num_ws, w_dim]
    base = flatten_styles(G.styles(ws), full)                             # [N, C_full]
    step = (cfg.k * std).to(dev, base.dtype)                              # [C_full]
    m = cfg.batch // 2
    todo = [int(i) for i in np.flatnonzero(~done)]
    autocast = (contextlib.nullcontext() if cfg.precision == "fp32" else
                torch.autocast(torch.device(dev).type, dtype=torch.float16 if cfg.precision == "fp16" else torch.bfloat16))
    last_save = time.monotonic()

    def save() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(path, sums=sums, done=done, std=std.numpy(), meta=json.dumps({"D": D, "C": C}))

    if progress is not None:
        progress(int(done.sum()), C)
    try:
        for g0 in range(0, len(todo), m):
            if (stop is not None and stop()) or interrupt_requested():
                raise KeyboardInterrupt
            group = torch.tensor(todo[g0:g0 + m])
            fidx = cov_to_full[group].to(dev)                             # [M] full-layout channel indices
            acc = torch.zeros(len(group), D, dtype=torch.float64, device=dev)
            rows = torch.arange(len(group), device=dev)
            for n in range(cfg.samples):
                s = base[n:n + 1].expand(2 * len(group), -1).clone()     # [2M, C_full]
                s[rows, fidx] += step[fidx]
                s[rows + len(group), fidx] -= step[fidx]
                with autocast:
                    img = G.synthesis_styles(ws[n:n + 1].expand(2 * len(group), -1, -1), unflatten_styles(s, full),
                                             noise_mode=noise_mode)
                    e = guide.encode_image(img.float().to(guide.device))
                e = torch.nn.functional.normalize(e.double(), dim=1).to(dev)  # [2M, D] unit rows
                acc += e[:len(group)] - e[len(group):]
            sums[group.numpy()] = acc.cpu().numpy()
            done[group.numpy()] = True
            if progress is not None:
                progress(int(done.sum()), C)
            if time.monotonic() - last_save >= cfg.checkpoint_seconds:
                save()
                last_save = time.monotonic()
    except KeyboardInterrupt:
        pass
    save()
    return _relevance(sums, done, layers, std, str(path))


def _relevance(sums: np.ndarray, done: np.ndarray, layers: tuple[StyleLayer, ...], std: torch.Tensor,
               source: str) -> Relevance:
    t = torch.from_numpy(sums)
    norm = t.norm(dim=1, keepdim=True)
    unit = torch.where(norm > 0, t / norm.clamp_min(1e-300), torch.zeros_like(t)).float()
    return Relevance(unit, torch.from_numpy(done.copy()), layers, std, source)


def read_relevance(path: str | Path, G: Any, embed_dim: int) -> Relevance:
    """Read a relevance file: ours (``.npz`` from :func:`compute_relevance`) or a published one (see
    :func:`read_published`); the layout is recognised by the row count.

    Raises:
        RelevanceFileError: unreadable, or a size that fits neither layout of ``G`` (one line).
    """
    from clipstyle.latents.stylespace import style_statistics

    path = Path(path)
    if not path.is_file():
        raise RelevanceFileError(f"no such relevance file: {path}")
    with open(path, "rb") as fh:
        if fh.read(6) == b"\x93NUMPY":
            return read_published(path, G, embed_dim)
    try:
        with np.load(path, allow_pickle=False) as f:
            if "sums" not in f.files or "done" not in f.files:
                raise RelevanceFileError(f"{path} is an .npz without 'sums' and 'done': not a relevance file")
            sums, done = f["sums"], f["done"].astype(bool)
            std = torch.from_numpy(np.asarray(f["std"], dtype=np.float32)) if "std" in f.files else None
    except RelevanceFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure: a broken file
        raise RelevanceFileError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from None
    for torgb in (False, True):
        layers = style_layers(G, torgb)
        if sums.shape == (sum(l.width for l in layers), embed_dim):
            std = std if std is not None else style_statistics(G).std
            return _relevance(sums.astype(np.float64), done, layers, std, str(path))
    raise RelevanceFileError(f"{path} holds {list(sums.shape)} but this network needs "
                             f"[{sum(l.width for l in style_layers(G, False))} or "
                             f"{sum(l.width for l in style_layers(G))}, {embed_dim}]")


def read_published(path: str | Path, G: Any, embed_dim: int, std: torch.Tensor | None = None) -> Relevance:
    """Read StyleCLIP's ``fs3.npy`` or HyperStyle's ``delta_i_c.npy``: float ``[C_conv, D]``, rows in the conv-only
    network order of :func:`~clipstyle.generator.stylespace.style_layers` (``include_torgb=False``).

    ``std`` (``[C_full]``) defaults to the statistics clipstyle computes for ``G`` (the published S statistics
    are Python pickles, which are never read).

    Raises:
        RelevanceFileError: not a plain ``.npy`` float matrix, or a size that does not fit (one line).
    """
    from clipstyle.latents.stylespace import style_statistics

    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:  # noqa: BLE001
        raise RelevanceFileError(f"{path} is not a plain .npy array ({type(exc).__name__}: {exc})") from None
    layers = style_layers(G, include_torgb=False)
    need = (sum(l.width for l in layers), int(embed_dim))
    if arr.ndim != 2 or tuple(arr.shape) != need or arr.dtype.kind != "f":
        raise RelevanceFileError(f"{path} holds {arr.dtype} {list(arr.shape)}; a published relevance file for this "
                                 f"{G.kind} network and CLIP model must be float [{need[0]}, {need[1]}] "
                                 f"(conv channels × CLIP embedding)")
    sums = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(sums).all():
        raise RelevanceFileError(f"{path} contains NaN or infinite values")
    std = std if std is not None else style_statistics(G).std
    return _relevance(sums, np.ones(need[0], dtype=bool), layers, std, str(path))
