"""Latent-direction workflows: ``direction apply``, ``direction learn`` and ``direction from-text``.

The maths lives in :mod:`clipstyle.latents.directions` (applying, InterFaceGAN's linear boundary, the
text delta); the text direction is optimized by the one loop of :mod:`clipstyle.optimize.loop` on a
:class:`~clipstyle.latents.directions.DirectionLatent`. Keyword names are the CLI's option names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence, TYPE_CHECKING

import torch

from clipstyle.latents.directions import TextDirection
from clipstyle.optimize.loop import StepInfo
from clipstyle.pipelines.run import Run

if TYPE_CHECKING:
    from clipstyle.workflows.directions import DirectionApplySettings, DirectionFromTextSettings, DirectionLearnSettings

__all__ = ["direction_apply", "direction_learn", "direction_from_text", "text_direction"]


def direction_apply(latents: "str | DirectionApplySettings | None" = None, direction: "str | Path | None" = None, /, *,
                    G: Any = None, device: str = "auto", callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
                    **options: Any) -> Run:
    """Walk a latent along a direction: ``ws + s·d`` on ``blocks`` for ``frames`` strengths of ``strength``.

    A latent file is rendered as it was made unless told otherwise: the network in its meta
    (``network=None``) and its stored StyleGAN2 noise maps (``noise_mode="const"`` and ``file_noise``).
    ``component``/``sigma`` pick principal component K of a GANSpace file, scaled by S standard deviations.
    A StyleSpace direction (``direction global``'s ``latents.npz`` or ``--out`` file) moves the styles instead:
    ``s(ws) + s·Δs`` (:mod:`clipstyle.latents.stylespace`); then ``latents.npz`` repeats the source's ws.

    Returns:
        :class:`Run` named ``direction-<direction>-<source>``: ``direction.gif``, ``strip.png``, ``latents.npz``
        with every frame's ws ``[frames, num_ws, w_dim]``.

    Raises:
        FileNotFoundError / DirectionError: the direction file. SpecError / LatentFileError / BlockSpecError:
        the source or blocks. ValueError: a bad ``strength``.
    """
    from clipstyle.workflows.directions import DirectionApplySettings

    s = DirectionApplySettings.of(latents, direction, **options)
    (latents, direction, strength, component, sigma, frames, blocks, file_noise, truncation, class_idx,
     noise_mode, fps) = (
        s.latents, s.direction, s.strength, s.component, s.sigma, s.frames, s.blocks, s.file_noise,
        s.truncation, s.class_idx, s.noise_mode, s.fps)
    from clipstyle.latents import parse_blocks
    from clipstyle.latents.constraints import parse_source
    from clipstyle.latents.directions import apply_direction, load_direction
    from clipstyle.latents.styleblocks import factors, parse_range, render_ws
    from clipstyle.pipelines.common import (
        check_noise_mode,
        labels,
        latent_file_of,
        load_network,
        pick_device,
        read_latent_meta,
    )
    from clipstyle.render.files import make_grid

    lo, hi = parse_range(strength, "--strength")
    values = factors(lo, hi, frames if lo != hi else 1)  # one strength ("5" or "5:5") is one frame
    nm = check_noise_mode(noise_mode)
    path = latent_file_of(latents)
    meta = read_latent_meta(path) if path is not None else {}
    source = s.model_keys()["G"][0]  # the one rule: --network, else the tuned generator, else the recorded one
    dev = pick_device(device, G)
    G = load_network(source, dev, G=G)
    s_dir = _s_direction(direction, G, component, sigma, blocks)
    d = load_direction(direction, G.num_ws, G.w_dim, component=component, sigma=sigma) if s_dir is None else None
    rows = parse_blocks(blocks, G.num_ws, G.block_groups())
    (src,) = parse_source(latents, G, dev, truncation, labels(G.c_dim, class_idx, 1, dev), allow_many=False)
    ws = apply_direction(src.ws, d, values, rows) if s_dir is None else src.ws.expand(len(values), -1, -1)
    synth = G
    if path is not None and file_noise and nm == "const":
        from clipstyle.inversion.noise import SynthesisWithNoise, read_noise

        noise = read_noise(path, G, meta.get("noise"))
        synth = SynthesisWithNoise(G, noise) if noise else G
    imgs = render_ws(synth, ws, nm) if s_dir is None else _render_s(G, synth, src.ws, s_dir, values, nm)
    strip = make_grid(list(imgs), rows=1)
    settings = {"command": "direction apply", "source": src.label, "direction": str(direction),
                "strengths": values, "blocks": list(rows), "network": source, "file_noise": synth is not G}
    return Run(name=f"direction-{Path(direction).stem}-{src.label}", result=None, settings=settings,
               network=G.describe(), ws_=ws.cpu(), images_=imgs, result_image=strip, gif_frames=tuple(imgs),
               extra_images={"strip.png": strip}, extra_gifs={"direction.gif": list(imgs)}, fps=fps,
               meta={"strengths": values, "direction": str(direction)})


def _s_direction(direction: str | Path, G: Any, component: int | None, sigma: float | None,
                 blocks: str | None) -> torch.Tensor | None:
    """The StyleSpace direction ``[C]`` of an S direction file (``direction global``), or None for any other file.

    Raises:
        DirectionError: --component/--sigma/--blocks with an S direction. SDirectionError: a layout that does not fit.
    """
    from clipstyle.latents.directions import DirectionError
    from clipstyle.latents.stylespace import is_s_direction, load_s_direction

    if not is_s_direction(direction):
        return None
    if component is not None or sigma is not None or blocks is not None:
        raise DirectionError(f"{direction} is a StyleSpace direction: --component, --sigma and --blocks do not apply "
                             "(it moves its own channels)")
    return load_s_direction(direction, G)


def _render_s(G: Any, synth: Any, ws: torch.Tensor, direction: torch.Tensor, values: Sequence[float],
              noise_mode: str) -> Any:
    """Frames of ``s(ws) + v·direction`` for each strength ``v`` (StyleSpace), uint8 ``[F, H, W, C]``; ``synth`` is
    ``G`` or its stand-in with the latent file's noise maps."""
    from clipstyle.generator.stylespace import flatten_styles, override_styles, style_layers, unflatten_styles
    from clipstyle.latents.stylespace import edit_flat
    from clipstyle.render.files import to_uint8

    layers = style_layers(G)
    out = []
    with torch.no_grad():
        s0 = flatten_styles(G.styles(ws), layers)
        flat = edit_flat(s0, direction, values)
        for i in range(0, flat.shape[0], 8):
            part = flat[i:i + 8]
            with override_styles(G, unflatten_styles(part, layers)):
                out.append(to_uint8(synth.synthesis(ws.expand(part.shape[0], -1, -1), noise_mode=noise_mode)))
    import numpy as np

    return np.concatenate(out)


def direction_learn(positive: "Sequence[str | Path] | DirectionLearnSettings | None" = None,
                    negative: "Sequence[str | Path] | None" = None, /, *, G: Any = None, device: str = "auto",
                    callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
                    **options: Any) -> Any:
    """Learn an attribute direction from two sets of latent files/folders (InterFaceGAN, Shen et al. 2020:
    the unit normal of a linear boundary between latents with and without the attribute).

    Returns:
        :class:`~clipstyle.latents.directions.LearnedDirection` whose ``direction`` is float32 ``[w_dim]``
        (``space="w"``) or ``[num_ws, w_dim]`` with RMS row norm 1 (``space="w+"``).

    Raises:
        DirectionError: too few latents, shapes differ, bad method/space/holdout. FileNotFoundError /
        LatentFileError: a path.
    """
    from clipstyle.workflows.directions import DirectionLearnSettings

    s = DirectionLearnSettings.of(positive, negative, **options)
    positive, negative, space, method, holdout, seed = s.positive, s.negative, s.space, s.method, s.holdout, s.seed
    from clipstyle.latents.directions import DirectionError, collect_latents, learn_direction, normalize_direction

    pos, _, shape_p = collect_latents(positive, space=space)
    neg, _, shape_n = collect_latents(negative, space=space)
    if shape_p != shape_n:
        raise DirectionError(f"the positive latents are {list(shape_p)}, the negative ones {list(shape_n)}")
    res = learn_direction(pos, neg, holdout=holdout, seed=seed, method=method)
    if space == "w+":
        d, _ = normalize_direction(res.direction.reshape(shape_p))
        res = dataclasses.replace(res, direction=d)
    return res


class _DirectionalTextLoss:
    """``mean_{n,k}(1 − ΔI·ΔT / max(‖ΔI‖, τ)) + l2·mean_rows ‖d_row‖²`` with matched cutouts of x and x0."""

    def __init__(self, guide: Any, delta_t: torch.Tensor, x0: torch.Tensor, cutouts: Any, latent: Any,
                 l2: float, tau: float, generator: torch.Generator) -> None:
        self.guide, self.delta_t, self.x0, self.cutouts = guide, delta_t, x0, cutouts
        self.latent, self.l2, self.tau, self.generator = latent, float(l2), float(tau), generator

    def __call__(self, images: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cuts, cuts0 = self.cutouts.paired(images, self.x0, self.generator)
        e = self.guide.encode_image(cuts)
        with torch.no_grad():
            e0 = self.guide.encode_image(cuts0)
        delta_i = e - e0  # [N*K, D]
        cos = (delta_i @ self.delta_t) / delta_i.norm(dim=-1).clamp_min(self.tau)
        loss = (1 - cos).mean()
        terms = {"directional": loss.detach()}
        if self.l2 > 0:
            size = self.latent.offset().square().sum(-1)[0, list(self.latent.rows)].mean()
            terms["l2"] = size.detach()
            loss = loss + self.l2 * size
        return loss, terms


def text_direction(G: Any, guide: Any, source: str, target: str, start_ws: torch.Tensor, cutouts: Any, *,
                   rows: Sequence[int] | None = None, steps: int = 100, lr: float = 0.02, l2: float = 0.0,
                   templates: Sequence[str] | None = None, min_delta_norm: float = 0.05, seed: int = 0,
                   callback: Callable[[StepInfo, torch.Tensor], None] | None = None,
                   stop: Callable[[], bool] | None = None, precision: str = "fp32") -> TextDirection:
    """Optimize one W+ offset ``d`` shared by all starts so each image changes from ``source`` to ``target``.

    Loss per step (directional CLIP loss, Gal et al. 2021, arXiv:2108.00946, with the same random cutouts
    of x and x0): ``mean_{n,k} (1 − ΔI·ΔT / max(‖ΔI‖, τ)) + l2·mean_rows ‖d_row‖²`` where
    ``ΔI = E_I(cut_k(G(ws_n + d))) − E_I(cut_k(G(ws_n)))`` and ``ΔT`` =
    :func:`~clipstyle.latents.directions.text_delta`; Adam on the one loop (:func:`clipstyle.optimize.loop.run`).

    Args:
        G: generator (frozen here). guide: :class:`~clipstyle.guidance.CLIPGuide`.
        source, target: texts, e.g. ``"a face"`` → ``"a smiling face"``.
        start_ws: float32 ``[N, num_ws, w_dim]`` samples (e.g. several seeds) on G's device.
        cutouts: :class:`~clipstyle.guidance.Cutouts`.
        rows: styleblocks ``d`` may use (default all); the others stay 0.
        steps, lr: optimization length and peak learning rate.
        l2: weight of the penalty on ``d``'s size.
        templates: prompt templates for ensembling.
        min_delta_norm: τ above (avoids the undefined cosine at ``d = 0``).
        seed: seed of the cutouts' own CPU ``torch.Generator``.
        callback: ``callback(StepInfo, images [N, 3, H, W])`` after each step; stop: True ends early.
        precision: the generator's and CLIP's precision (:data:`~clipstyle.optimize.precision.PRECISIONS`); a
            reduced mode or ``auto`` runs only where the precision check measured it safe on ``G``
            (:func:`~clipstyle.optimize.precision_verdicts.verified_precision`). ``d``, Adam and the loss stay
            float32; the start images ``x0`` are rendered in float32.

    Returns:
        :class:`~clipstyle.latents.directions.TextDirection` (direction ``[num_ws, w_dim]`` float32 CPU).

    Raises:
        DirectionError: identical texts, or the optimization ran to the end and left ``d`` at zero (a stop
            before any update moved ``d`` returns the zero direction with strength 0, ``interrupted``).
        FloatingPointError: the loss became NaN/inf.
        PrecisionRefusedError: an explicit reduced ``precision`` failed its check on ``G``.
    """
    from clipstyle.latents.directions import DirectionError, DirectionLatent, normalize_direction, text_delta
    from clipstyle.optimize.loop import Schedule, run
    from clipstyle.optimize.precision_verdicts import verified_precision

    device = G.w_avg.device
    ws0 = start_ws.detach().to(device, torch.float32)
    latent = DirectionLatent(ws0, rows)
    delta_t = text_delta(guide, source, target, templates).to(device)
    with torch.no_grad():
        x0 = G.synthesis(ws0, noise_mode="const")
    gen = torch.Generator().manual_seed(int(seed))
    loss = _DirectionalTextLoss(guide, delta_t, x0, cutouts, latent, l2, min_delta_norm, gen)
    result = run(G, latent, loss, Schedule(lr=lr, steps=steps), callbacks=[callback] if callback else [],
                 stop=stop, precision=verified_precision(G, precision, device))
    final = latent.offset().detach()[0].cpu()
    if result.interrupted:
        best = ((result.ws.to(device) - ws0) * latent.mask)[0].cpu()
        # the lowest loss so far may be step 0's, taken at d = 0: then the latest offset is the best there is
        final = best if bool(best.any()) else final
        if not bool(final.any()):  # stopped before any update moved d (the first steps' lr may be 0)
            return TextDirection(final, 0.0, tuple(h["loss"] for h in result.history), latent.rows, True,
                                 result.precision)
    try:
        unit, strength = normalize_direction(final)
    except DirectionError:
        raise DirectionError("the optimization did not move the latent; try more --steps or a larger --lr") from None
    return TextDirection(unit, strength, tuple(h["loss"] for h in result.history), latent.rows, result.interrupted,
                         result.precision)


def direction_from_text(source: "str | DirectionFromTextSettings | None" = None, target: str | None = None, /, *,
                        G: Any = None, guide: Any = None, device: str = "auto", callback: Any = None,
                        stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
                        **options: Any) -> Any:
    """Find a W+ direction that turns ``source`` into ``target`` across the samples of ``seeds`` (truncated
    with ``truncation``); see :func:`text_direction`. ``ensemble`` averages the texts over the shipped
    prompt templates (Radford et al. 2021, §3.1.4).

    Raises:
        SpecError: bad seeds/class. BlockSpecError: bad blocks. DirectionError: see :func:`text_direction`.
    """
    from clipstyle.tracking import check_log, tracking, with_phase
    from clipstyle.workflows.directions import DirectionFromTextSettings

    s = DirectionFromTextSettings.of(source, target, **options)
    check_log(log)  # a bad --log spec or a missing extra: before anything loads
    (source, target, seeds, steps, lr, blocks, l2, ensemble, cutouts, network, clip_model, clip_pretrained,
     truncation, class_idx) = (
        s.source, s.target, s.seeds, s.steps, s.lr, s.blocks, s.l2, s.ensemble, s.cutouts, s.network, s.clip_model,
        s.clip_pretrained, s.truncation, s.class_idx)
    import numpy as np

    from clipstyle.guidance import CutoutConfig, Cutouts
    from clipstyle.guidance.recipes import load_templates
    from clipstyle.latents import parse_blocks, seed_z
    from clipstyle.pipelines.common import labels, load_guide, load_network, parse_seeds, pick_device

    seed_list = parse_seeds(seeds)
    dev = pick_device(device, G)
    G = load_network(network, dev, G=G, progress=not quiet)
    rows = parse_blocks(blocks, G.num_ws, G.block_groups())
    c = labels(G.c_dim, class_idx, len(seed_list), dev)
    z = torch.from_numpy(np.concatenate([seed_z(s, G.z_dim) for s in seed_list])).to(dev, torch.float32)
    with torch.no_grad():
        ws0 = G.mapping(z, c, truncation_psi=truncation)
    guide = load_guide(clip_model, clip_pretrained, dev, guide)
    cut = Cutouts(CutoutConfig(num_cutouts=cutouts), guide.input_size)
    with tracking(log, f"{source} → {target}", preview_every=0, settings=s.to_dict()) as trk:
        # no Run to finish: the per-step losses and the settings are what is tracked
        return text_direction(G, guide, source, target, ws0, cut, rows=rows, steps=steps, lr=lr, l2=l2,
                              templates=load_templates() if ensemble else None, callback=with_phase(callback, trk),
                              stop=stop, precision=s.precision)
