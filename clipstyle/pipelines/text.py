"""Text → image: optimize a W+ latent so that CLIP sees the prompt in the image (``clipstyle "PROMPT"``).

The objective is StyleCLIP's latent optimization (Patashnik et al. 2021, arXiv:2103.17249, Sec. 4):
a CLIP distance of random cutouts of ``G.synthesis(ws)`` to the (weighted) prompts, optionally the
directional loss of a recipe (Gal et al. 2021) and ``λ_L2 ‖ws − ws0‖²``, minimized by the one Adam
loop of :mod:`clipstyle.optimize.loop`.

Two layers:

* :func:`text_job` builds a :class:`TextJob` — everything one optimization needs (start latent, rows,
  loss, its own random generator) — from a loaded ``G`` and CLIP ``guide``. Batch runners put several
  jobs into one forward pass; each job's loss sees only its own slice.
* :func:`text_to_image` is the public workflow (keyword names = the CLI's option names): load models
  (or reuse ``G``/``guide``), build the job, run the loop, return a :class:`~clipstyle.pipelines.run.Run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from clipstyle.optimize.loop import Schedule, StepInfo
from clipstyle.pipelines.run import Run

__all__ = ["TextJob", "text_job", "text_to_image", "default_cutouts"]


def default_cutouts(device: str) -> int:
    """Cutouts per image when not given: 32 on a GPU (CUDA/MPS), 8 on the CPU."""
    return 8 if str(device).startswith("cpu") else 32


@dataclass(frozen=True, eq=False)
class TextJob:
    """One text → image optimization, ready for the loop.

    Attributes:
        name: what its run folder is named after (the prompt, else the image prompt's stem or the recipe).
        prompt: the prompt spec as given.
        ws0: start latent float32 ``[n, num_ws, w_dim]`` on G's device (mixed rows not yet applied).
        free_rows: rows the optimization may change (mixed rows excluded), sorted.
        mix: ``{row: [w_dim] tensor}`` rows fixed bit-exactly to another latent.
        loss: ``(images [n, 3, H, W] in [-1, 1], ws [n, num_ws, w_dim]) → (scalar, {term: value})``;
            its cutouts draw from :attr:`generator` only.
        generator: this job's CPU ``torch.Generator`` (seeded from ``seed``, 0 without one).
        schedule: learning rate and steps.
        z: start ``z`` ``[n, z_dim]`` (None when starting at ``w_avg``); c: labels ``[n, c_dim]``.
        settings: the job's resolved settings (for ``run.json``).
    """

    name: str
    prompt: str
    ws0: torch.Tensor
    free_rows: tuple[int, ...]
    mix: Mapping[int, torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    generator: torch.Generator
    schedule: Schedule
    z: torch.Tensor | None
    c: torch.Tensor
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Images in this job (its ``--batch``)."""
        return int(self.ws0.shape[0])

    def latent(self, device: Any = None):
        """A fresh :class:`~clipstyle.latents.Latent` for this job (on ``device``, default ws0's)."""
        from clipstyle.latents import Latent

        lat = Latent(self.ws0, free_rows=self.free_rows, mix=dict(self.mix))
        return lat.to(self.ws0.device if device is None else device)


def text_job(G: Any, guide: Any, prompt: str, *, seed: int | None = None, truncation: float = 1.0,
             blocks: str | None = None, mix: Sequence[str] = (), recipe: Any = None, batch: int = 1,
             cutouts: int | None = None, l2: float | None = None, image_prompt: str | Path | None = None,
             class_idx: int | None = None, lr: float = 0.1, steps: int = 300,
             generator: torch.Generator | None = None) -> TextJob:
    """Build the :class:`TextJob` of one prompt on a loaded generator and CLIP model.

    Args:
        G: generator (``mapping``, ``synthesis``, ``w_avg``, ``num_ws``, ``block_groups()``).
        guide: a :class:`~clipstyle.guidance.CLIPGuide`.
        prompt: weighted prompt spec (``"a:1 | b:0.5"``; ``@file.png`` items are image prompts); may be
            empty when ``image_prompt`` or ``recipe`` says what to do.
        seed: start from this seed's ``z`` (NVIDIA's ``RandomState(seed).randn``) with ``truncation``;
            None = ``w_avg`` (a batch: seeds 0…n−1 at psi 0.25). Also seeds the cutouts.
        blocks: styleblocks to optimize (``0-3,8``, ``coarse``…; default the recipe's, else all).
        mix: ``SOURCE:BLOCKS`` constraints fixing rows to another latent.
        recipe: a recipe name or :class:`~clipstyle.guidance.recipes.Recipe` (directional loss, blocks, keep).
        batch: n starts optimized together.
        cutouts: crops per image (default :func:`default_cutouts` of G's device; 0 = the whole image).
        l2: weight of ``‖ws − ws0‖²`` (default the recipe's keep weight, else 0).
        image_prompt: an image whose CLIP embedding the result should match.
        class_idx: class of conditional networks.
        lr, steps: the schedule.
        generator: the cutouts' random source (default a CPU generator seeded with ``seed`` or 0).

    Returns:
        :class:`TextJob` whose ``ws0`` is ``[batch, num_ws, w_dim]`` on G's device.

    Raises:
        GuidanceError: nothing to guide by, a bad prompt, an unreadable image prompt.
        SpecError / BlockSpecError / LatentFileError: bad ``blocks``/``mix``/``class_idx``.
        RecipeError: unknown recipe. ValueError: ``steps < 1``, ``lr <= 0``, ``batch < 1``.
    """
    from clipstyle.guidance import CombinedLoss, CutoutConfig, Cutouts, DirectionalLoss, LatentL2, build_prompt_loss
    from clipstyle.guidance.clip import GuidanceError
    from clipstyle.latents import start_ws
    from clipstyle.latents.constraints import apply_mix, batch_starts, constraint_rows, latent_l2_weight
    from clipstyle.pipelines.common import labels

    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    schedule = Schedule(lr=lr, steps=steps)
    rec = recipe
    if isinstance(recipe, str):
        from clipstyle.guidance.recipes import get_recipe

        rec = get_recipe(recipe)
    prompt = prompt or ""
    if not prompt.strip() and image_prompt is None and rec is None:
        raise GuidanceError("the prompt is empty: say what to draw, e.g. clipstyle \"a smiling child\"")
    dev = G.w_avg.device
    c = labels(G.c_dim, class_idx, batch, dev)
    free, mixed = constraint_rows(G, blocks, list(mix or ()), rec, dev, c[:1])
    if batch == 1:
        ws0, z = start_ws(G, seed=seed, truncation_psi=truncation, c=c)
    else:
        ws0, z = batch_starts(G, batch, seed, truncation, c)
    num_cutouts = cutouts if cutouts is not None else default_cutouts(str(dev))
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    cut = Cutouts(CutoutConfig(num_cutouts=num_cutouts), guide.input_size)
    terms: list = []
    if prompt.strip() or image_prompt is not None:
        terms = build_prompt_loss(guide, prompt, cut, image_prompt=str(image_prompt) if image_prompt else None,
                                  generator=generator)
    if rec is not None:
        with torch.no_grad():
            x0 = G.synthesis(apply_mix(ws0, mixed), noise_mode="const")
        terms.append((DirectionalLoss(guide, rec.source, rec.target, x0, cut, generator=generator), rec.strength))
    l2_weight = latent_l2_weight(l2, rec, G.num_ws, G.w_dim)
    if l2_weight > 0:
        terms.append((LatentL2(ws0), l2_weight))
    loss = CombinedLoss(terms)
    free_rows = tuple(sorted(set(int(r) for r in free) - set(int(r) for r in mixed)))
    name = prompt or (Path(str(image_prompt)).stem if image_prompt else "") or (rec.name if rec else "run")
    settings = {"prompt": prompt, "steps": steps, "lr": lr, "seed": seed, "truncation": truncation,
                "class": class_idx, "image_prompt": str(image_prompt) if image_prompt else None,
                "mix": list(mix or ()), "recipe": rec.name if rec else None, "batch": batch,
                "blocks": list(free_rows), "cutouts": num_cutouts, "l2": l2_weight, "mixed_rows": sorted(mixed)}
    return TextJob(name=name, prompt=prompt, ws0=ws0, free_rows=free_rows, mix=mixed, loss=loss,
                   generator=generator, schedule=schedule, z=z, c=c, settings=settings)


def text_to_image(prompt: str = "", *, network: str = "ffhq", clip_model: str = "ViT-B-32",
                  clip_pretrained: str = "openai", steps: int = 300, lr: float = 0.1, seed: int | None = None,
                  truncation: float = 1.0, blocks: str | None = None, mix: Sequence[str] = (),
                  blend: str | None = None, recipe: Any = None, batch: int = 1, cutouts: int | None = None,
                  l2: float | None = None, image_prompt: str | Path | None = None, class_idx: int | None = None,
                  save_every: int = 10, device: str = "auto", precision: str = "fp32",
                  callback: Callable[[StepInfo, torch.Tensor], None] | None = None,
                  stop: Callable[[], bool] | None = None, G: Any = None, guide: Any = None,
                  log: Any = None, quiet: bool = True) -> Run:
    """Draw ``prompt``: optimize the generator's W+ latent so CLIP sees the prompt in the image.

    Keyword names are the CLI's option names (``clipstyle "PROMPT" --steps 100 --seed 3`` is
    ``text_to_image("PROMPT", steps=100, seed=3)``; ``--class`` is ``class_idx``). The same settings and
    seed give bit-identical ``ws`` from the CLI and from here.

    Args:
        prompt: weighted prompt spec; see :func:`text_job` (and there for ``seed``, ``truncation``,
            ``blocks``, ``mix``, ``recipe``, ``batch``, ``cutouts``, ``l2``, ``image_prompt``, ``class_idx``).
        network: alias, checkpoint path or URL (ignored when ``G`` is given).
        clip_model, clip_pretrained: open_clip model and weights (``"none"``: random; ignored with ``guide``).
        steps, lr: the Adam schedule (Karras et al. 2020 ramps).
        blend: optimize and render in a blended network ``NETWORK@RES[:SMOOTH]`` (built on ``G`` when given).
        save_every: keep a GIF frame every this many steps.
        device: ``auto`` (CUDA, else MPS, else CPU; with ``G`` given: G's device), ``cpu``, ``cuda``, ``mps``.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast of the generator's forward).
        callback: ``callback(StepInfo, images [n, 3, H, W])`` after every step.
        stop: asked after every step; True ends the loop keeping the best so far (``run.interrupted``).
        G, guide: already loaded generator / CLIP model to reuse (the UI, batch jobs).
        log: experiment trackers: ``--log`` specs (``["tensorboard:runs", "mlflow:file:///tmp/mlruns"]``),
            tracker objects, or a :class:`~clipstyle.tracking.Trackers` the caller opened and finishes after
            saving (see :func:`clipstyle.tracking.tracking`); ``None`` = none. Checked before any model loads.
        quiet: no download progress bars.

    Returns:
        :class:`~clipstyle.pipelines.run.Run`: ``ws`` float32 ``[batch, num_ws, w_dim]`` CPU, ``images``
        uint8 ``[batch, H, W, 3]``, ``history``, ``frames``; ``run.save(outdir)`` writes the run folder.

    Raises:
        DeviceError: an absent device. MissingExtraError / LogSpecError: ``log`` names a tracker whose extra
        is missing, or a malformed spec. GuidanceError / SpecError / BlockSpecError / RecipeError /
        LatentFileError: the user's settings (see :func:`text_job`). FileNotFoundError / CheckpointError:
        the network. FloatingPointError: the loss became NaN (try a smaller ``lr``).
    """
    from clipstyle.optimize.loop import PRECISIONS, run
    from clipstyle.pipelines.common import load_guide, load_network, pick_device
    from clipstyle.tracking import check_log, tracking

    check_log(log)  # a bad spec or a missing extra: one line before any work
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    rec = recipe
    if isinstance(recipe, str):
        from clipstyle.guidance.recipes import get_recipe

        rec = get_recipe(recipe)
    dev = pick_device(device, G)
    G = load_network(network, dev, blend, G=G, progress=not quiet)
    if guide is None:  # the user's mistakes in blocks/mix/class first, before CLIP loads
        from clipstyle.latents.constraints import constraint_rows
        from clipstyle.pipelines.common import labels

        constraint_rows(G, blocks, list(mix or ()), rec, dev, labels(G.c_dim, class_idx, 1, dev))
        guide = load_guide(clip_model, clip_pretrained, dev)
    job = text_job(G, guide, prompt,
                   seed=seed, truncation=truncation, blocks=blocks, mix=mix, recipe=rec, batch=batch,
                   cutouts=cutouts, l2=l2, image_prompt=image_prompt, class_idx=class_idx, lr=lr, steps=steps)
    settings = {"command": "text", "network": network, "clip_model": clip_model, "clip_pretrained": clip_pretrained,
                **job.settings, "save_every": save_every, "device": dev, "precision": precision,
                "noise_mode": "const", "blend": blend}
    with tracking(log, job.name, preview_every=save_every) as trackers:
        callbacks = [cb for cb in (callback, trackers.callback if trackers else None) if cb is not None]
        result = run(G, job.latent(dev), job.loss, job.schedule, save_every=save_every,
                     callbacks=callbacks, precision=precision, stop=stop)
        extra = {}
        if batch > 1:
            extra = {f"item{i}.png": img for i, img in enumerate(result.frames[-1])}
        out = Run(name=job.name, result=result, settings=settings, network=G.describe(), z=job.z, c=job.c,
                  extra_images=extra)
        trackers.finish(out)
    return out
