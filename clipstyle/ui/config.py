"""Settings of one ``clipstyle ui`` process: what the operator allowed at start and the per-request caps.

Nothing here imports Gradio or torch. Everything a browser may use comes from here (allowed networks,
folders, weights files) or from files uploaded in its own session (:mod:`clipstyle.ui.sources`); nothing a
browser types is ever opened as a server path or fetched as a URL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from clipstyle.errors import UsageError

__all__ = ["Limits", "UIConfig"]


@dataclass(frozen=True)
class Limits:
    """Per-request caps set by the operator (``clipstyle ui --max-steps …``).

    The defaults keep one request under about five minutes on a GPU at 1024² (and the time cap holds
    on any device).

    Attributes:
        max_steps: optimization steps of one request (Text, Photo edit, projection, tuning each).
        max_frames: frames of one interpolation (all segments together).
        max_batch: images optimized together in one Text request.
        max_resolution: the longest side, in pixels, of an uploaded photo or image prompt (checked from
            its header before anything is decoded); also the size of an aligned face.
        max_seconds: wall-clock seconds of one request; the run then stops as if Stop was pressed,
            keeping its best result so far.
        max_upload_mb: size of one uploaded file, MiB (enforced by Gradio's upload route and again here).
        max_session_mb: all uploads of one browser session together, MiB.
        max_queue: requests waiting for the model at once (more get "the queue is full").
    """

    max_steps: int = 500
    max_frames: int = 240
    max_batch: int = 4
    max_resolution: int = 2048
    max_seconds: float = 300.0
    max_upload_mb: float = 50.0
    max_session_mb: float = 200.0
    max_queue: int = 16

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_frames", "max_batch", "max_resolution", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a whole number ≥ 1, got {value!r}")
        for name in ("max_seconds", "max_upload_mb", "max_session_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value!r}")
        if self.max_resolution < 64:
            raise UsageError(f"--max-resolution must be at least 64 pixels, got {self.max_resolution}")

    @property
    def upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def session_bytes(self) -> int:
        return int(self.max_session_mb * 2**20)


@dataclass(frozen=True)
class UIConfig:
    """Settings of one ``clipstyle ui`` process (the CLI's option names).

    Attributes:
        networks: the generators a browser may use (aliases, paths or URLs, as the operator wrote them);
            the first one is loaded at start and drives every tab; the others are offered as Blend's
            network B. A browser chooses among these names only.
        allow_dirs: folders whose latent files (``.npz .npy .pt .pth``) and pictures (``.png .jpg .jpeg
            .webp .bmp``) are offered by name (keyframes, photos, image prompts); nothing outside them.
        encoder, id_weights, lpips_weights: the e4e checkpoint (Photo's Encode and e4e start), ArcFace
            weights (identity loss) and LPIPS weights (perceptual projection; None: the default download).
        clip_model / clip_pretrained: the CLIP model (``"none"``: random weights, tests).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``. outdir: where every run folder is recorded.
        preview_every: a preview image every this many steps. limits: the per-request caps.
    """

    networks: tuple[str, ...] = ("ffhq",)
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    device: str = "auto"
    outdir: str = "out/ui"
    preview_every: int = 5
    allow_dirs: tuple[str, ...] = ()
    encoder: str | None = None
    id_weights: str | None = None
    lpips_weights: str | None = None
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if isinstance(self.networks, str):
            object.__setattr__(self, "networks", (self.networks,))
        names = tuple(str(n).strip() for n in self.networks)
        if not names or not all(names):
            raise UsageError("give at least one --network (the first is the one the UI loads)")
        object.__setattr__(self, "networks", tuple(dict.fromkeys(names)))
        object.__setattr__(self, "allow_dirs", tuple(str(d) for d in self.allow_dirs))
        if int(self.preview_every) < 1:
            raise UsageError(f"preview_every must be ≥ 1, got {self.preview_every!r}")

    @property
    def network(self) -> str:
        """The network loaded at start (the first of :attr:`networks`)."""
        return self.networks[0]
