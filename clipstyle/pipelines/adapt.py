"""``clipstyle adapt``: make a new network from two words (StyleGAN-NADA, Gal et al. 2022, arXiv:2108.00946).

A trainable copy of the network is fine-tuned so that, for every latent, the CLIP-space change from the base's
image to the copy's follows the change from ``source`` to ``target`` text (or towards style images); see
:mod:`clipstyle.adapt`. The run folder holds the adapted network (``generator.safetensors``, with its provenance:
base network and sha256, texts, steps, layers), a before/after grid over fixed seeds and ``show`` latents
(``result.png``: base images on top, adapted below), ``progress.gif`` of that grid, ``latents.npz`` with the shown
latents (it names the adapted network, so ``clipstyle render`` of it renders in the new domain) and ``run.json``
with the loss history.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from clipstyle.errors import UsageError
from clipstyle.pipelines.run import Run

__all__ = ["ADAPTED_GENERATOR", "AdaptRun", "AdaptSettings", "adapt"]

#: File name of the adapted network inside the run folder.
ADAPTED_GENERATOR = "generator.safetensors"

_ROWS = re.compile(r"^\s*(all|coarse|middle|fine|\d+(\s*-\s*\d+)?)(\s*,\s*(coarse|middle|fine|\d+(\s*-\s*\d+)?))*\s*$",
                   re.IGNORECASE)


class AdaptSettingsError(UsageError):
    """A setting of ``adapt`` that cannot work (checked before any model loads; exit code 2)."""


@dataclass(frozen=True, kw_only=True)
class AdaptSettings:
    """Everything that decides the result of ``clipstyle adapt`` (defaults: StyleGAN-NADA's).

    Attributes:
        network: the base network (alias, path or URL).
        source, target: the texts of the direction (``"photo"`` → ``"pencil sketch"``).
        style_images: image files giving the target direction instead of ``target`` (their mean CLIP embedding
            minus that of the base's samples).
        steps, batch, lr: iterations, latents per iteration, Adam's learning rate (NADA: 300, 2, 0.002).
        layers: ``auto`` (NADA's adaptive selection, Sec. 4.2), ``all``, or ``ws`` rows/styleblocks whose layers
            train (``0-7``, ``coarse,middle``).
        auto_k: rows the adaptive selection picks per iteration (None: two thirds of the rows).
        select_steps: latent-optimization steps of the adaptive selection.
        torgb: train the toRGB layers too (frozen by default, as the mapping network always is).
        clip_model: comma-separated open_clip models used together (NADA: ``ViT-B-32,ViT-B-16``).
        clip_weights: their weights, comma-separated (None: equal).
        clip_pretrained: the open_clip weights tag for every model (``none``: random, for tests).
        templates: average each text over the shipped prompt templates.
        cutouts: matched random crops per image for CLIP (0: the whole image).
        seeds: fixed seeds of the before/after grid; truncation: their ψ.
        show: more latents for the grid (seeds or latent ``.npz`` files, e.g. a projected photo).
        seed: seeds the training latents (explicit ``torch.Generator``).
        preview_every: a progress-GIF frame every this many steps.
        fps: of the progress GIF.

    Raises:
        AdaptSettingsError: on construction, for any setting that cannot work (before any model loads).
    """

    network: str = "ffhq"
    source: str = "photo"
    target: str | None = None
    style_images: tuple[str, ...] = ()
    steps: int = 300
    batch: int = 2
    lr: float = 0.002
    layers: str = "auto"
    auto_k: int | None = None
    select_steps: int = 1
    torgb: bool = False
    clip_model: str = "ViT-B-32,ViT-B-16"
    clip_weights: str | None = None
    clip_pretrained: str = "openai"
    templates: bool = True
    cutouts: int = 0
    seeds: str = "0-3"
    truncation: float = 0.7
    show: tuple[str, ...] = ()
    seed: int = 0
    preview_every: int = 10
    fps: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "style_images", tuple(str(s) for s in self.style_images))
        object.__setattr__(self, "show", tuple(str(s) for s in self.show))
        fail = AdaptSettingsError
        if not str(self.network).strip():
            raise fail("--network is empty")
        if not str(self.source).strip():
            raise fail("--source is empty: name the domain the network draws now, e.g. --source photo")
        target = (self.target or "").strip()
        if not target and not self.style_images:
            raise fail("say what to adapt to: --target \"pencil sketch\" or --style-image PATH")
        if target and self.style_images:
            raise fail("give --target or --style-image, not both")
        if target and target.lower() == str(self.source).strip().lower():
            raise fail(f"--source and --target are the same text ({target!r}): there is no direction to follow")
        for path in self.style_images:
            if not Path(path).expanduser().is_file():
                raise fail(f"--style-image: no such file: {path}")
        from clipstyle.pipelines.common import latent_file_of

        for item in self.show:
            file = latent_file_of(item)  # None for seeds
            if file is not None and not file.expanduser().is_file():
                raise fail(f"--show: no such latent file: {item}")
        for name, low in (("steps", 1), ("batch", 1), ("select_steps", 1), ("cutouts", 0), ("preview_every", 0),
                          ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise fail(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if self.auto_k is not None and (not isinstance(self.auto_k, int) or self.auto_k < 1):
            raise fail(f"--auto-k must be an integer >= 1, got {self.auto_k!r}")
        for name in ("lr", "fps", "truncation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value) > 0 \
                    or float(value) != float(value) or float(value) == float("inf"):
                raise fail(f"--{name} must be a number > 0, got {value!r}")
        layers = str(self.layers).strip().lower()
        if layers != "auto" and not _ROWS.match(layers):
            raise fail(f"--layers must be auto, all, or rows/styleblocks such as 0-7 or coarse,middle; got "
                       f"{self.layers!r}")
        if layers != "auto" and self.auto_k is not None:
            raise fail("--auto-k applies to --layers auto only")
        from clipstyle.latents.constraints import SpecError
        from clipstyle.pipelines.common import parse_seeds

        try:
            parse_seeds(self.seeds)
        except SpecError as exc:
            raise fail(str(exc)) from None
        self.clip_models()
        self.clip_weight_values()

    def clip_models(self) -> list[str]:
        """The CLIP model names, in order."""
        models = [m.strip() for m in str(self.clip_model).split(",")]
        if not models or any(not m for m in models):
            raise AdaptSettingsError(f"--clip-model {self.clip_model!r}: give model names separated by commas")
        return models

    def clip_weight_values(self) -> list[float]:
        """One weight per CLIP model (equal when not given)."""
        n = len(self.clip_models())
        if self.clip_weights is None or not str(self.clip_weights).strip():
            return [1.0] * n
        try:
            weights = [float(w) for w in str(self.clip_weights).split(",")]
        except ValueError:
            raise AdaptSettingsError(f"--clip-weights {self.clip_weights!r}: give numbers separated by commas") from None
        if len(weights) != n:
            raise AdaptSettingsError(f"--clip-weights gives {len(weights)} weights for {n} CLIP models")
        if any(not w > 0 or w == float("inf") for w in weights):
            raise AdaptSettingsError("--clip-weights must all be > 0")
        return weights


@dataclass(frozen=True)
class AdaptRun(Run):
    """A :class:`Run` that also writes the adapted network (``generator.safetensors``) with its provenance."""

    generator: Any = None
    provenance: Any = None

    def write_into(self, folder: Path) -> dict[str, Path]:
        from clipstyle.generator.formats.native import PROVENANCE_KEY, save_native
        from clipstyle.inversion.files import add_arrays

        paths = super().write_into(folder)
        paths["generator"] = save_native(self.generator, Path(folder) / ADAPTED_GENERATOR,
                                         meta={PROVENANCE_KEY: dict(self.provenance or {})})
        add_arrays(paths["latents"], {}, {"generator": ADAPTED_GENERATOR})
        return paths


def _guides(settings: AdaptSettings, guide: Any, dev: str) -> list[tuple[Any, float]]:
    from clipstyle.pipelines.common import load_guide

    if guide is not None:
        given = list(guide) if isinstance(guide, (list, tuple)) else [guide]
        weights = settings.clip_weight_values() if len(given) == len(settings.clip_models()) else [1.0] * len(given)
        return list(zip(given, weights))
    return [(load_guide(m, settings.clip_pretrained, dev), w)
            for m, w in zip(settings.clip_models(), settings.clip_weight_values())]


def _critics(settings: AdaptSettings, guides: Sequence[tuple[Any, float]], G: Any, dev: str) -> list[Any]:
    import torch

    from clipstyle.adapt.losses import image_critic, text_critic
    from clipstyle.guidance.losses import load_image_prompt
    from clipstyle.guidance.recipes import load_templates

    if settings.target:
        templates = load_templates() if settings.templates else None
        return [text_critic(g, w, settings.source, settings.target, templates) for g, w in guides]
    gen = torch.Generator().manual_seed(int(settings.seed) + 7)
    z = torch.randn([8, G.z_dim], generator=gen).to(dev)
    with torch.no_grad():
        samples = G.synthesis(G.mapping(z, None, truncation_psi=settings.truncation), noise_mode="const")
    out = []
    for g, w in guides:
        style = torch.cat([load_image_prompt(p, g.input_size) for p in settings.style_images])
        out.append(image_critic(g, w, style, samples))
    return out


def _provenance(settings: AdaptSettings, G: Any, result: Any, guides: Sequence[tuple[Any, float]]) -> dict:
    from clipstyle import __version__
    from clipstyle.generator.formats.native import read_provenance
    from clipstyle.generator.formats.writers import public_source
    from clipstyle.io.cache import sha256_file

    path = Path(str(G.source.path)) if getattr(G.source, "path", "") else None
    sha = sha256_file(path) if path is not None and path.is_file() else None
    parent = read_provenance(path) if path is not None and path.suffix == ".safetensors" and path.is_file() else None
    lineage = [*((parent or {}).get("lineage") or []), *([sha] if sha else [])]
    return {"method": "StyleGAN-NADA directional CLIP loss (Gal et al. 2022)", "clipstyle": __version__,
            "base": public_source(G.source.source or settings.network), "base_sha256": sha, "lineage": lineage,
            "base_kind": G.kind, "source": settings.source, "target": settings.target,
            "style_images": [Path(p).name for p in settings.style_images],
            "steps": result.run.steps_done, "steps_asked": settings.steps, "interrupted": result.run.interrupted,
            "layers": settings.layers, "trained_layers": result.layers.get("layers"), "auto_k": result.layers.get("k"),
            "torgb_frozen": not settings.torgb, "mapping_frozen": True, "batch": settings.batch, "lr": settings.lr,
            "seed": settings.seed, "clip_models": [str(getattr(g, "model_name", "?")) for g, _ in guides],
            "clip_weights": [w for _, w in guides], "clip_pretrained": settings.clip_pretrained}


def adapt(settings: AdaptSettings | None = None, *, G: Any = None, guide: Any = None, device: str = "auto",
          callback: Callable | None = None, stop: Callable[[], bool] | None = None,
          log: Callable[[str], None] | None = None, quiet: bool = True, **options: Any) -> Run:
    """Adapt a network to a text (or style images) with the directional CLIP loss (StyleGAN-NADA).

    Args:
        settings: :class:`AdaptSettings` (or give its fields as keyword ``options``).
        G: a loaded base generator (else ``settings.network`` is loaded); not modified.
        guide: a loaded :class:`~clipstyle.guidance.CLIPGuide`, or a list of them (else ``settings.clip_model``
            is loaded; a list as long as the models takes their weights).
        device: ``auto``, ``cpu``, ``cuda``…; callback: ``(StepInfo, images)`` after every step; stop: True ends
            training keeping the best generator so far (Ctrl-C does the same).
        log: receives one-line notes; quiet: no progress bar.

    Returns:
        :class:`AdaptRun` named ``adapt-<target>``: ``generator`` (the adapted network), ``provenance``, ``images``
        the adapted renders of the grid latents (uint8 ``[M, H, W, C]``), ``history`` the loss per step.

    Raises:
        AdaptSettingsError: bad settings (before anything loads). FamilyError: a network adapt cannot train.
        DirectionError / GuidanceError: texts or style images with no direction. SpecError / LatentFileError /
        BlockSpecError: bad ``seeds``/``show``/``layers`` for this network. CheckpointError, DownloadError.
    """
    import numpy as np
    import torch

    from clipstyle.adapt.layers import parse_layers
    from clipstyle.adapt.losses import AdaptLoss
    from clipstyle.adapt.trainer import AdaptConfig, adapt_generator, check_trainable
    from clipstyle.latents.constraints import parse_sources
    from clipstyle.optimize.loop import OptimizeResult
    from clipstyle.pipelines.common import load_network, pick_device
    from clipstyle.pipelines.photo_parts import stage
    from clipstyle.render.files import make_grid

    if settings is None:
        settings = AdaptSettings(**options)
    elif options:
        raise TypeError(f"give settings or keyword options, not both ({', '.join(options)})")
    dev = pick_device(device, G)
    G = load_network(settings.network, dev, G=G, progress=not quiet)
    check_trainable(G)
    rows = parse_layers(settings.layers, G.num_ws, G.block_groups())
    spec = ",".join([settings.seeds, *settings.show])
    shown = parse_sources(spec, G, dev, settings.truncation)
    preview = torch.cat([s.ws for s in shown]).to(dev, torch.float32)  # [M, num_ws, w_dim]
    guides = _guides(settings, guide, dev)
    loss = AdaptLoss(_critics(settings, guides, G, dev), cutouts=settings.cutouts,
                     generator=torch.Generator().manual_seed(int(settings.seed) + 1))
    config = AdaptConfig(steps=settings.steps, batch=settings.batch, lr=settings.lr, rows=rows, k=settings.auto_k,
                         select_steps=settings.select_steps, torgb=settings.torgb, seed=settings.seed,
                         preview_every=settings.preview_every)
    with stage("adapting", settings.steps, quiet, callback) as cbs:
        result = adapt_generator(G, loss, config, preview=preview, callbacks=cbs, stop=stop)
    if result.run.stop_reason and log is not None:
        log(result.run.stop_reason)
    before = result.before
    grids = tuple(make_grid(np.concatenate([before, f]), rows=2) for f in result.frames)
    provenance = _provenance(settings, G, result, guides)
    r = result.run
    opt = OptimizeResult(ws=preview.cpu(), best_ws=preview.cpu(), best_loss=r.best_loss, best_step=r.best_step,
                         history=r.history, frames=result.frames, frame_steps=result.frame_steps,
                         interrupted=r.interrupted, seconds=r.seconds, steps_done=r.steps_done,
                         extra={"stop_reason": r.stop_reason})
    extra = {"provenance": provenance, "shown": [s.label for s in shown], "rows_trained": [list(x) for x in
             result.rows_trained], "trainable_layers": result.layers, "peak_cuda_memory_bytes": result.peak_memory}
    name = "adapt-" + (settings.target or Path(settings.style_images[0]).stem)
    return AdaptRun(name=name, result=opt, settings={"command": "adapt", **asdict(settings)}, network=G.describe(),
                    extra_json=extra, extra_images={"before.png": make_grid(before), "after.png":
                    make_grid(result.frames[-1])}, result_image=grids[-1], gif_frames=grids, fps=settings.fps,
                    generator=result.G, provenance=provenance)
