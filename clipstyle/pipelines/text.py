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

from clipstyle.guidance.cutouts import default_cutouts
from clipstyle.optimize.loop import Schedule, StepInfo
from clipstyle.pipelines.run import Run

if TYPE_CHECKING:
    from clipstyle.workflows.text import TextSettings

__all__ = ["TextJob", "default_cutouts", "run_in_s", "s_channels", "s_outputs", "text_job", "text_run",
           "text_to_image"]




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
        space: ``"w+"`` (:meth:`latent`) or ``"s"`` (StyleSpace: :func:`run_in_s` on ``apply_mix(ws0, mix)`` and
            :func:`s_channels` of ``free_rows``).
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
    space: str = "w+"

    @property
    def n(self) -> int:
        """Images in this job (its ``--batch``)."""
        return int(self.ws0.shape[0])

    def latent(self, device: Any = None):
        """A fresh :class:`~clipstyle.latents.Latent` for this job (on ``device``, default ws0's).

        Raises:
            UsageError: a ``--space s`` job (its StyleSpace code is built by :func:`run_in_s`, which needs G;
            stacked batches stack W+ latents only).
        """
        from clipstyle.latents import Latent

        if self.space == "s":
            from clipstyle.errors import UsageError

            raise UsageError("--space s optimizes StyleSpace codes one prompt at a time: run it with clipstyle "
                             "\"PROMPT\" --space s (stacked batch jobs optimize W+ only)")

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
    if s.space == "s":  # ws stays fixed in S: a recipe's keep weight on ws would be a constant 0
        l2_weight = 0.0
    if l2_weight > 0:
        terms.append((LatentL2(ws0), l2_weight))
    loss = CombinedLoss(terms)
    free_rows = tuple(sorted(set(int(r) for r in free) - set(int(r) for r in mixed)))
    name = s.prompt or (Path(s.image_prompt).stem if s.image_prompt else "") or (rec.name if rec else "run")
    settings_out = {"prompt": s.prompt, "steps": s.steps, "lr": s.lr, "seed": s.seed, "truncation": s.truncation,
                    "class": s.class_idx, "image_prompt": s.image_prompt, "mix": list(s.mix),
                    "recipe": rec.name if rec else None, "batch": s.batch, "blocks": list(free_rows),
                    "cutouts": num_cutouts, "l2": l2_weight, "mixed_rows": sorted(mixed), "space": s.space}
    return TextJob(name=name, prompt=s.prompt, ws0=ws0, free_rows=free_rows, mix=mixed, loss=loss,
                   generator=generator, schedule=schedule, z=z, c=c, settings=settings_out, space=s.space)


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
        log: experiment trackers: ``--log`` specs (``["tensorboard:runs", "mlflow:file:///tmp/mlruns"]``),
            tracker objects, or a :class:`~clipstyle.tracking.Trackers` the caller opened and finishes after
            saving (see :func:`clipstyle.tracking.tracking`); ``None`` = none.
        quiet: no download progress bars.

    Returns:
        :class:`~clipstyle.pipelines.run.Run`: ``ws`` float32 ``[batch, num_ws, w_dim]`` CPU, ``images``
        uint8 ``[batch, H, W, 3]``, ``history``, ``frames``; ``run.save(outdir)`` writes the run folder. The
        same settings and seed give bit-identical ``ws``. With ``space="s"`` (StyleSpace, Wu et al. 2021;
        StyleCLIP's ``--work_in_stylespace``) ``ws`` is the start and ``run.extra_arrays["styles"]`` float32
        ``[batch, C]`` the optimized styles (``meta`` ``{"space": "s"}``; latents.npz stores both).

    Raises:
        SettingsError: any invalid setting, before anything loads. DeviceError: an absent device.
        SpecError / BlockSpecError / LabelError: settings that do not fit the network (before CLIP loads).
        CheckpointError / DownloadError: the network or CLIP weights.
    """
    from clipstyle.optimize.loop import run
    from clipstyle.optimize.precision_verdicts import verified_precision
    from clipstyle.pipelines.common import load_guide, load_network, pick_device
    from clipstyle.workflows.text import TextSettings

    from clipstyle.tracking import check_log, tracking

    s = TextSettings.of(prompt, **options)
    check_log(log)  # a bad --log spec or a missing extra: one line before any work
    dev = pick_device(device, G)
    G = load_network(s.network, dev, s.blend, progress=not quiet) if G is None else G.to(dev)
    from clipstyle.optimize.resources import check_resources, estimate_optimization

    check_resources(estimate_optimization("text", int(s.batch), G, cutouts=int(s.cutouts or 0)), dev)  # before CLIP
    if guide is None:  # the user's mistakes in blocks/mix/class first, before CLIP loads
        from clipstyle.latents.constraints import constraint_rows
        from clipstyle.pipelines.common import labels

        constraint_rows(G, s.blocks, list(s.mix), _recipe(s.recipe), dev, labels(G.c_dim, s.class_idx, 1, dev))
        guide = load_guide(s.clip_model, s.clip_pretrained, dev)
    if s.compile != "off":  # in place: the first step compiles (same results, faster later steps)
        from clipstyle.optimize.compile import maybe_compile

        maybe_compile(G.synthesis, s.compile, dev)
        maybe_compile(guide.model.visual, s.compile, dev)
    job = text_job(G, guide, s)
    precision = verified_precision(G, s.precision, dev)  # a reduced mode only where measured safe on G
    with tracking(log, job.name, preview_every=s.save_every) as trackers:
        callbacks = [cb for cb in (callback, trackers.callback if trackers else None) if cb is not None]
        if s.space == "s":
            from clipstyle.latents.constraints import apply_mix

            result, styles = run_in_s(G, apply_mix(job.ws0, job.mix), s_channels(G, job.free_rows), job.loss,
                                      job.schedule, save_every=s.save_every, callbacks=callbacks,
                                      precision=precision, stop=stop)
        else:
            result, styles = run(G, job.latent(dev), job.loss, job.schedule, save_every=s.save_every,
                                 callbacks=callbacks, precision=precision, stop=stop), None
        out = text_run(s, job, result, G, dev, styles=styles)
        trackers.finish(out)  # a no-op when the caller lent its own trackers (it finishes after saving)
    return out


def text_run(settings: "TextSettings", job: TextJob, result: Any, G: Any, device: str,
             extra_settings: Mapping[str, Any] | None = None, styles: torch.Tensor | None = None) -> Run:
    """The :class:`Run` of one text job's optimization ``result`` (alone or stacked in a batch): every setting
    as ``run.json`` records it, a grid and ``itemN.png`` for a batch of starts; with ``styles`` (``--space s``,
    float32 ``[N, C]``) latents.npz also holds them (:func:`s_outputs`)."""
    recorded = {"command": "text", **settings.to_dict(), **job.settings, "device": device, "noise_mode": "const",
                **(extra_settings or {})}
    extra = {}
    if job.n > 1:
        extra = {f"item{i}.png": img for i, img in enumerate(result.frames[-1])}
    arrays, meta = s_outputs(styles)
    return Run(name=job.name, result=result, settings=recorded, network=G.describe(), z=job.z, c=job.c,
               extra_images=extra, extra_arrays=arrays, meta=meta)


def s_channels(G: Any, rows: "tuple[int, ...] | list[int] | None") -> tuple[int, ...] | None:
    """The flat S channels (:func:`clipstyle.generator.stylespace.style_layers` order, toRGB included) of the
    layers fed by the ws ``rows`` → sorted indices, or None when every layer is fed by one of them (all free).

    ``--blocks`` in StyleSpace: a layer's style is ``A(ws[ws_index])`` (Wu et al. 2021, §3), so a row's
    channels are those of the layers that row feeds.
    """
    from clipstyle.generator.stylespace import style_layers

    layers = style_layers(G)
    keep = set(int(r) for r in (range(G.num_ws) if rows is None else rows))
    if all(l.ws_index in keep for l in layers):
        return None
    return tuple(l.offset + i for l in layers if l.ws_index in keep for i in range(l.width))


def run_in_s(G: Any, ws: torch.Tensor, channels: "tuple[int, ...] | None", loss: Any, schedule: Schedule,
             **run_options: Any) -> tuple[Any, torch.Tensor]:
    """Optimize the StyleSpace code of ``ws`` instead of W+ (StyleCLIP's ``--work_in_stylespace``) on the one loop.

    Args:
        G: the generator (``synthesis_styles``, ``styles``). ws: float32 ``[N, num_ws, w_dim]`` start (mixed
            rows already in); it stays fixed and its styles ``s0 = S(ws)`` are the start.
        channels: flat S channels that move (None = all); the others stay bit-identical to ``s0``.
        loss, schedule, **run_options: as :func:`clipstyle.optimize.loop.run` takes them (``callbacks`` get
            the loop's per-step callback in addition).

    Returns:
        ``(result, styles)``: the loop's :class:`~clipstyle.optimize.loop.OptimizeResult` (``ws`` = the start
        ws; its last frame and ``extra["final_image"]`` rendered from ``styles``) and ``styles`` float32 CPU
        ``[N, C]``: the final styles, or the lowest-loss ones when the run was interrupted (Ctrl-C, ``stop``,
        NaN), as W+ keeps its best ws.

    Raises:
        UsageError: a channel out of range. What :func:`~clipstyle.optimize.loop.run` raises.
    """
    import dataclasses

    from clipstyle.latents.stylespace import StyleLatent, render_flat
    from clipstyle.optimize.loop import run, to_uint8_frames

    latent = StyleLatent(G, ws.detach().float(), channels)
    synth = latent.generator()
    callbacks = [synth.callback, *run_options.pop("callbacks", ())]
    result = run(synth, latent, loss, schedule, callbacks=callbacks, **run_options)
    styles = latent.best_styles if result.interrupted else latent.styles().detach().cpu()
    styles = styles.float().clone()  # [N, C]
    with torch.no_grad():
        image = render_flat(G, latent.start_ws, styles, noise_mode=run_options.get("noise_mode", "const"))
    frames = result.frames[:-1] + (to_uint8_frames(image),)
    result = dataclasses.replace(result, frames=frames, extra={**result.extra, "final_image": image.detach().cpu()})
    return result, styles


def s_outputs(styles: torch.Tensor | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(extra_arrays, meta)`` of a run in StyleSpace for latents.npz: ``styles`` float32 ``[N, C]`` and
    ``{"space": "s"}`` (what :func:`clipstyle.pipelines.creative.render` reads back); empty for W+ (None)."""
    if styles is None:
        return {}, {}
    return {"styles": styles.detach().cpu().float().numpy()}, {"space": "s"}
