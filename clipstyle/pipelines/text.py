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
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from clipstyle.optimize.loop import Schedule, StepInfo
from clipstyle.pipelines.run import Run

if TYPE_CHECKING:
    from clipstyle.workflows.text import TextSettings

__all__ = ["TextJob", "default_cutouts", "text_job", "text_run", "text_to_image"]


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


def text_job(G: Any, guide: Any, settings: "TextSettings | str", *, generator: torch.Generator | None = None,
             **options: Any) -> TextJob:
    """Build the :class:`TextJob` of one prompt on a loaded generator and CLIP model.

    Args:
        G: generator (``mapping``, ``synthesis``, ``w_avg``, ``num_ws``, ``block_groups()``).
        guide: a :class:`~clipstyle.guidance.CLIPGuide`.
        settings: the job's :class:`~clipstyle.workflows.text.TextSettings`, or its prompt with the other
            settings as ``options`` (as :func:`text_to_image` takes them). ``seed`` starts
            from that seed's ``z`` (NVIDIA's ``RandomState(seed).randn``) with ``truncation``; None =
            ``w_avg`` (a batch: seeds 0…n−1 at psi 0.25). It also seeds the cutouts.
        generator: the cutouts' random source (default a CPU generator seeded with ``seed`` or 0).

    Returns:
        :class:`TextJob` whose ``ws0`` is ``[batch, num_ws, w_dim]`` on G's device.

    Raises:
        GuidanceError: an unreadable image prompt. SpecError / BlockSpecError / LatentFileError / LabelError:
        ``blocks``/``mix``/``class_idx`` that do not fit this network.
    """
    from clipstyle.guidance import CombinedLoss, CutoutConfig, Cutouts, DirectionalLoss, LatentL2, build_prompt_loss
    from clipstyle.latents import start_ws
    from clipstyle.latents.constraints import apply_mix, batch_starts, constraint_rows, latent_l2_weight
    from clipstyle.pipelines.common import labels

    from clipstyle.workflows.text import TextSettings

    s = TextSettings.of(settings, **options)
    schedule = Schedule(lr=s.lr, steps=s.steps)
    rec = _recipe(s.recipe)
    dev = G.w_avg.device
    c = labels(G.c_dim, s.class_idx, s.batch, dev)
    free, mixed = constraint_rows(G, s.blocks, list(s.mix), rec, dev, c[:1])
    if s.batch == 1:
        ws0, z = start_ws(G, seed=s.seed, truncation_psi=s.truncation, c=c)
    else:
        ws0, z = batch_starts(G, s.batch, s.seed, s.truncation, c)
    num_cutouts = s.cutouts if s.cutouts is not None else default_cutouts(str(dev))
    if generator is None:
        generator = torch.Generator().manual_seed(0 if s.seed is None else int(s.seed))
    cut = Cutouts(CutoutConfig(num_cutouts=num_cutouts), guide.input_size)
    terms: list = []
    if s.prompt.strip() or s.image_prompt is not None:
        terms = build_prompt_loss(guide, s.prompt, cut, image_prompt=s.image_prompt, generator=generator)
    if rec is not None:
        with torch.no_grad():
            x0 = G.synthesis(apply_mix(ws0, mixed), noise_mode="const")
        terms.append((DirectionalLoss(guide, rec.source, rec.target, x0, cut, generator=generator), rec.strength))
    l2_weight = latent_l2_weight(s.l2, rec, G.num_ws, G.w_dim)
    if l2_weight > 0:
        terms.append((LatentL2(ws0), l2_weight))
    loss = CombinedLoss(terms)
    free_rows = tuple(sorted(set(int(r) for r in free) - set(int(r) for r in mixed)))
    name = s.prompt or (Path(s.image_prompt).stem if s.image_prompt else "") or (rec.name if rec else "run")
    settings_out = {"prompt": s.prompt, "steps": s.steps, "lr": s.lr, "seed": s.seed, "truncation": s.truncation,
                    "class": s.class_idx, "image_prompt": s.image_prompt, "mix": list(s.mix),
                    "recipe": rec.name if rec else None, "batch": s.batch, "blocks": list(free_rows),
                    "cutouts": num_cutouts, "l2": l2_weight, "mixed_rows": sorted(mixed)}
    return TextJob(name=name, prompt=s.prompt, ws0=ws0, free_rows=free_rows, mix=mixed, loss=loss,
                   generator=generator, schedule=schedule, z=z, c=c, settings=settings_out)


def _recipe(name: str | None) -> Any:
    if name is None:
        return None
    from clipstyle.guidance.recipes import get_recipe

    return get_recipe(name)


def text_to_image(prompt: "str | TextSettings" = "", /, *, G: Any = None, guide: Any = None, device: str = "auto",
                  callback: Callable[[StepInfo, torch.Tensor], None] | None = None,
                  stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
                  **options: Any) -> Run:
    """Draw ``prompt``: optimize the generator's W+ latent so CLIP sees the prompt in the image.

    StyleCLIP's latent optimization (Patashnik et al. 2021, Sec. 4): CLIP distance of random cutouts of
    ``G.synthesis(ws)`` to the weighted prompts (+ a recipe's directional loss, Gal et al. 2021, and
    ``λ ‖ws − ws0‖²``), minimized by the one Adam loop.

    Args:
        prompt: the prompt spec, or a whole :class:`~clipstyle.workflows.text.TextSettings`.
        **options: the other settings by name — the CLI's option names (``clipstyle "P" --steps 100 --seed
            3`` is ``text_to_image("P", steps=100, seed=3)``; ``--class`` is ``class_idx``); see
            :class:`~clipstyle.workflows.text.TextSettings` for each one's meaning, default and range.
        G: the generator to use as is (with ``blend`` set: the blended network); default: loaded from
            ``network`` (and blended).
        guide: the CLIP model to use; default: loaded from ``clip_model``/``clip_pretrained``.
        device: ``auto`` (with ``G`` given: G's device; else CUDA, else MPS, else CPU), ``cpu``, ``cuda``…
        callback: ``callback(StepInfo, images [n, 3, H, W])`` after every step.
        stop: asked before every step; True ends the loop keeping the best so far (``run.interrupted``).
        log: experiment trackers (``"tensorboard[:DIR]"``, ``"mlflow[:URI]"``), see :mod:`clipstyle.tracking`.
        quiet: no download progress bars.

    Returns:
        :class:`~clipstyle.pipelines.run.Run`: ``ws`` float32 ``[batch, num_ws, w_dim]`` CPU, ``images``
        uint8 ``[batch, H, W, 3]``, ``history``, ``frames``; ``run.save(outdir)`` writes the run folder. The
        same settings and seed give bit-identical ``ws``.

    Raises:
        SettingsError: any invalid setting, before anything loads. DeviceError: an absent device.
        SpecError / BlockSpecError / LabelError: settings that do not fit the network (before CLIP loads).
        CheckpointError / DownloadError: the network or CLIP weights.
    """
    from clipstyle.optimize.loop import run
    from clipstyle.pipelines.common import load_guide, load_network, pick_device
    from clipstyle.workflows.text import TextSettings

    s = TextSettings.of(prompt, **options)
    dev = pick_device(device, G)
    G = load_network(s.network, dev, s.blend, progress=not quiet) if G is None else G.to(dev)
    if guide is None:  # the user's mistakes in blocks/mix/class first, before CLIP loads
        from clipstyle.latents.constraints import constraint_rows
        from clipstyle.pipelines.common import labels

        constraint_rows(G, s.blocks, list(s.mix), _recipe(s.recipe), dev, labels(G.c_dim, s.class_idx, 1, dev))
        guide = load_guide(s.clip_model, s.clip_pretrained, dev)
    job = text_job(G, guide, s)
    result = run(G, job.latent(dev), job.loss, job.schedule, save_every=s.save_every,
                 callbacks=[callback] if callback is not None else [], precision=s.precision, stop=stop)
    return text_run(s, job, result, G, dev)


def text_run(settings: "TextSettings", job: TextJob, result: Any, G: Any, device: str,
             extra_settings: Mapping[str, Any] | None = None) -> Run:
    """The :class:`Run` of one text job's optimization ``result`` (alone or stacked in a batch): every setting
    as ``run.json`` records it, a grid and ``itemN.png`` for a batch of starts."""
    recorded = {"command": "text", **settings.to_dict(), **job.settings, "device": device, "noise_mode": "const",
                **(extra_settings or {})}
    extra = {}
    if job.n > 1:
        extra = {f"item{i}.png": img for i, img in enumerate(result.frames[-1])}
    return Run(name=job.name, result=result, settings=recorded, network=G.describe(), z=job.z, c=job.c,
               extra_images=extra)
