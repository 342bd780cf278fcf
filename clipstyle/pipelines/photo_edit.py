"""The editing half of :mod:`clipstyle.pipelines.photo`: ``edit`` (photo or latent + prompt) and ``invert_z``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipstyle.pipelines.photo_parts import (
    PhotoRun,
    identity_similarity,
    load_weights,
    noise_meta,
    photo_image,
    say_once,
    side_by_side_frames,
    stage,
    start_from_latents,
    uint8_image,
    with_blend,
)
from clipstyle.pipelines.common import labels, read_latent_meta
from clipstyle.pipelines.run import Run

if TYPE_CHECKING:
    from clipstyle.workflows.photo import EditSettings, InvertZSettings

Notify = Callable[[str], None] | None

__all__ = ["StyleSynthesisWithNoise", "edit", "edit_in_s", "invert_z"]


def edit(photo_or_latents: "str | Path | EditSettings | None" = None, prompt: str | None = None, /, *, G: Any = None,
         guide: Any = None, encoder: Any = None, identity: Any = None, perceptual: Any = None, device: str = "auto",
         callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, notify: Notify = None,
         quiet: bool = True, **options: Any) -> Run:
    """Edit a photo (aligned, encoded, projected, tuned first, as asked) or a latent file with a text prompt.

    The objective is StyleCLIP's (Patashnik et al. 2021, Sec. 4) with the directional CLIP loss of
    StyleGAN-NADA (Gal et al. 2022, Eq. 3–4) from ``source`` to ``prompt``, ``λ_L2 ‖w − w_start‖²``, a CLIP
    keep term and, with ``id_weights``, the ArcFace identity loss ``id_lambda · (1 − similarity(x, x_photo))``.
    A latent file is edited in the generator the one rule names (:func:`clipstyle.workflows.options.latent_network`:
    ``network``, else its tuned generator, else its recorded network).

    Args:
        photo_or_latents, prompt: the start and the edit text, or a whole
            :class:`~clipstyle.workflows.photo.EditSettings` as the first argument.
        **options: the other settings by name (see ``EditSettings``).
        G: the base generator (a photo is projected into it; ``blend`` is built on it). guide: CLIP.
        encoder, identity, perceptual, device, callback, stop, log, notify, quiet: as in
            :func:`clipstyle.pipelines.photo.project`.

    Returns:
        A :class:`Run` named after the prompt (result.png = after, before_after.png, target.png for a photo,
        latents.npz, run.json with ``projection_metrics``, ``tune_metrics``, ``identity_similarity``).

    Raises:
        SettingsError (before anything loads), GuidanceError, ImageError, LatentFileError, AlignmentError,
        PhotoOptionError, CheckpointError, LPIPSWeightsError, DownloadError.
    """
    import torch

    from clipstyle.guidance import CutoutConfig, Cutouts
    from clipstyle.guidance.cutouts import default_cutouts
    from clipstyle.inversion.edit import EditConfig
    from clipstyle.inversion.edit import edit as run_edit
    from clipstyle.latents.constraints import constraint_rows, latent_l2_weight
    from clipstyle.pipelines.common import load_guide, pick_device
    from clipstyle.pipelines.photo import _models, _project_photo, split_models
    from clipstyle.render.files import side_by_side
    from clipstyle.tracking import check_log, tracking, with_phase
    from clipstyle.workflows.photo import EditSettings

    encoder, perceptual = split_models(options, encoder, perceptual)
    s = EditSettings.of(photo_or_latents, prompt, **options)
    check_log(log)  # a bad --log spec or a missing extra: before anything loads
    emit = say_once(notify)
    rec = None
    if s.recipe is not None:
        from clipstyle.guidance.recipes import get_recipe

        rec = get_recipe(s.recipe)
    text = s.prompt_text()
    start_path = Path(s.start)
    source_text = s.source if s.source is not None else (rec.source if rec is not None else "a face")
    is_latent = EditSettings.is_latent_input(s.start)
    dev = pick_device(device, G)
    face_id = identity if identity is not None else load_weights("identity", s.id_weights, "--id-weights", dev)
    # The fallback notes are for the real-photo path (--align/--tune/--encoder/--id-weights asked for).
    full_path = not is_latent and (s.align or s.tune or s.encoder is not None or s.id_weights is not None)
    if face_id is None and full_path:
        emit("no --id-weights given: identity is kept by the CLIP keep term only (pass --id-weights "
             "model_ir_se50.pth for the ArcFace identity loss)")
    with tracking(log, text or start_path.stem, preview_every=s.save_every) as trk:
        parts: dict[str, Any] | None = None
        if is_latent:
            base = G.to(dev) if G is not None else load_model_for_latents(s, dev, quiet)
            ws0, noise, c_file, _ = start_from_latents(start_path, base, dev)
            c = c_file if c_file is not None and s.class_idx is None else labels(base.c_dim, s.class_idx,
                                                                                       ws0.shape[0], dev)
            reference = None
        else:
            from clipstyle.io.images import check_image

            check_image(start_path)
            dev, base, enc, _, perceptual_model = _models(s, dev, G, encoder, face_id or identity, perceptual, quiet)
            if enc is None and full_path:
                emit("no --encoder given: the photo is projected from the mean w (pass --encoder "
                     "e4e_ffhq_encode.pt to start from an e4e encoding)")
            c = labels(base.c_dim, s.class_idx, 1, dev)
        free, mixed = constraint_rows(base, s.blocks, list(s.mix), rec, dev, c[:1])
        G = with_blend(base, s.blend, dev, quiet)
        if not is_latent:
            img = photo_image(start_path, s.align, emit)
            parts = _project_photo(base, img, steps=s.project_steps, lr=s.project_lr, space=s.project_space,
                                   perceptual=perceptual_model, mse=s.mse, noise_reg=s.noise_reg, crop=s.crop,
                                   init="e4e" if enc is not None else "mean", encoder=enc, tune=s.tune,
                                   tune_steps=s.tune_steps, tune_lr=s.tune_lr, seed=s.seed, save_every=s.save_every,
                                   dev=dev, c=c, mix=None, quiet=quiet, callback=callback, stop=stop, emit=emit,
                                   track=trk, phase="project", precision=s.precision)
            ws0, noise = parts["projection"].ws.to(dev), parts["projection"].noise
            reference = parts["target"]
            if parts["tuned"] is not None:
                G = base = parts["tuned"].G
        directional = s.strength if s.strength is not None else (rec.strength if rec is not None else 1.0)
        l2_weight = latent_l2_weight(s.l2, rec, G.num_ws, G.w_dim, default=0.008)
        if s.space == "s":  # ws stays fixed in S: an L2 term on ws would be a constant 0
            l2_weight = 0.0
        num = s.cutouts if s.cutouts is not None else default_cutouts(dev)
        guide = load_guide(s.clip_model, s.clip_pretrained, dev, guide)
        cut = Cutouts(CutoutConfig(num_cutouts=num), guide.input_size)
        cfg = EditConfig(source_text=source_text, steps=s.steps, lr=s.lr, directional=directional, l2=l2_weight,
                         keep=s.keep, free_rows=free, save_every=s.save_every, seed=s.seed, precision=s.precision)
        extra_terms = []
        if face_id is not None:
            from clipstyle.encoders.arcface import IdentityLoss
            from clipstyle.inversion.noise import SynthesisWithNoise

            if reference is None:
                with torch.no_grad():
                    reference = SynthesisWithNoise(G, noise).synthesis(ws0[:1], noise_mode="const")
            extra_terms.append((IdentityLoss(face_id, reference), s.id_lambda))
        with stage("editing", s.steps, quiet, with_phase(callback, trk)) as cbs:
            styles = None
            if s.space == "s":
                result, styles = edit_in_s(G, ws0, text, guide, cut, cfg, noise=noise, mix=mixed,
                                           extra_terms=extra_terms, callbacks=cbs, stop=stop)
            else:
                result = run_edit(G, ws0, text, guide, cut, cfg, noise=noise, mix=mixed, extra_terms=extra_terms,
                                  callbacks=cbs, stop=stop)
        before_u8, after_u8 = uint8_image(result.before), uint8_image(result.after)
        settings = {"command": "edit", **s.to_dict(), "input": str(start_path),
                    "input_kind": "latents" if is_latent else "photo", "prompt": text, "source": source_text,
                    "recipe": rec.name if rec is not None else None, "blocks": list(result.free_rows),
                    "strength": directional, "l2": l2_weight, "mixed_rows": sorted(mixed), "cutouts": num,
                    "class": s.class_idx, "device": dev, "id_lambda": s.id_lambda if face_id is not None else None}
        extra: dict[str, Any] = {}
        images = {"before_after.png": side_by_side(before_u8, after_u8)}
        tuned_G = None
        if parts is not None:
            proj = parts["projection"]
            settings.update({"mse": proj.config.mse, "tune_steps": s.tune_steps if s.tune else None,
                             "projected_into": base.describe().get("source")})
            extra["projection_metrics"] = proj.metrics
            images["target.png"] = uint8_image(proj.target)
            if parts["tuned"] is not None:
                extra["tune_metrics"] = parts["tuned"].metrics
                extra["tune_precision"] = parts["tuned"].run.precision
                tuned_G = parts["tuned"].G
        if face_id is not None:
            extra["identity_similarity"] = identity_similarity(face_id, result.after, reference)
            emit(f"identity similarity (ArcFace) of the edit to the photo: {extra['identity_similarity']:.4f}")
        arrays, meta = noise_meta(dict(noise))
        from clipstyle.pipelines.text import s_outputs

        s_arrays, s_meta = s_outputs(styles)  # --space s: the edited styles, ws = the start
        arrays.update(s_arrays)
        meta.update(s_meta)
        if s.blend:
            meta.update({"network": base.describe().get("source"), "blend": s.blend})
        if is_latent:
            named = read_latent_meta(start_path).get("generator")
            if named and not s.network:  # keep rendering the edit with the same tuned generator
                meta["generator"] = str((start_path.parent / named).resolve())
        name = text if rec is None or text != rec.target else rec.name
        run = PhotoRun(name=name, result=result.run, settings=settings, network=G.describe(),
                       c=c if G.c_dim > 0 else None, extra_json=extra, extra_images=images, extra_arrays=arrays,
                       result_image=after_u8, gif_frames=side_by_side_frames(before_u8, result.run.frames),
                       generator=tuned_G, latent_meta=meta)
        trk.finish(run)  # a no-op when the caller lent its trackers (it finishes after saving)
    return run


class StyleSynthesisWithNoise:
    """:class:`~clipstyle.inversion.noise.SynthesisWithNoise` (``G.synthesis`` with substituted StyleGAN2 noise
    maps ``{name: [res, res]}``) that also renders StyleSpace codes with those maps:
    ``synthesis_styles(ws [N, num_ws, w_dim], {layer: [N, width]}, noise_mode)`` → ``[N, C, H, W]`` in ~[-1, 1].
    Other attributes are ``G``'s."""

    def __init__(self, G: Any, noise: Any = None) -> None:
        from clipstyle.inversion.noise import SynthesisWithNoise

        self.G = G
        self.inner = SynthesisWithNoise(G, noise)

    def __getattr__(self, name: str) -> Any:  # num_ws, w_avg, styles, style_sites… of the real generator
        G = self.__dict__.get("G")
        if G is None:
            raise AttributeError(name)
        return getattr(G, name)

    def synthesis(self, ws: Any, noise_mode: str = "const") -> Any:
        return self.inner.synthesis(ws, noise_mode=noise_mode)

    def synthesis_styles(self, ws: Any, styles: Any, noise_mode: str = "const") -> Any:
        from clipstyle.generator.stylespace import override_styles

        with override_styles(self.G, styles):
            return self.inner.synthesis(ws, noise_mode=noise_mode)


def edit_in_s(G: Any, start_ws: Any, prompt: str, guide: Any, cutouts: Any, config: Any, *, noise: Any = None,
              mix: Any = None, extra_terms: Any = (), callbacks: Any = (), stop: Any = None) -> tuple[Any, Any]:
    """:func:`clipstyle.inversion.edit.edit` in StyleSpace (StyleCLIP's ``--work_in_stylespace``, Patashnik et
    al. 2021; S of Wu et al. 2021): the same loss terms (directional, keep, extra) on the styles of w_s.

    Args: as :func:`clipstyle.inversion.edit.edit`; ``config.free_rows`` pick the S channels of the layers those
    rows feed (:func:`clipstyle.pipelines.text.s_channels`), mixed rows excluded; ``config.l2`` should be 0
    (ws does not move); ``config.precision`` is verified on ``G`` as there.

    Returns:
        ``(EditResult, styles)``: ``ws`` = ``start_ws`` = w_s (mixed rows in) float32 CPU ``[N, num_ws, w_dim]``,
        ``after`` rendered from ``styles`` float32 CPU ``[N, C]`` (the channels outside the chosen ones equal
        ``S(w_s)`` bit for bit).

    Raises:
        GuidanceError: as :func:`~clipstyle.inversion.edit.edit`. ValueError: bad shapes.
    """
    import torch

    from clipstyle.guidance import CombinedLoss
    from clipstyle.inversion.edit import EditResult, edit_terms, render
    from clipstyle.latents.constraints import apply_mix
    from clipstyle.optimize.loop import Schedule
    from clipstyle.pipelines.text import run_in_s, s_channels

    device = G.w_avg.device
    G.check_ws(start_ws)
    mixed = dict(mix or {})
    ws = apply_mix(start_ws.detach().to(device, torch.float32), mixed)  # w_s [N, num_ws, w_dim]
    rows = range(G.num_ws) if config.free_rows is None else config.free_rows
    free = tuple(sorted(set(int(r) for r in rows) - set(int(r) for r in mixed)))
    synth = StyleSynthesisWithNoise(G, {k: v.to(device) for k, v in (noise or {}).items()})
    before = render(synth, ws)
    gen = torch.Generator().manual_seed(int(config.seed))  # cutout geometry (drawn on the CPU)
    loss = CombinedLoss([*edit_terms(guide, prompt, before, ws, config, cutouts, generator=gen), *extra_terms])
    schedule = Schedule(lr=config.lr, steps=config.steps, rampup=config.rampup, rampdown=config.rampdown)
    from clipstyle.optimize.precision_verdicts import verified_precision

    precision = verified_precision(G, config.precision, device)
    result, styles = run_in_s(synth, ws, s_channels(G, free), loss, schedule, noise_mode="const",
                              save_every=config.save_every, callbacks=list(callbacks), stop=stop,
                              precision=precision)
    return EditResult(ws=result.ws.cpu(), start_ws=ws.cpu(), before=before.cpu(),
                      after=result.extra["final_image"].cpu(), free_rows=free, run=result), styles


def load_model_for_latents(s: Any, device: str, quiet: bool) -> Any:
    """The generator of a latent-file workflow, loaded by the key its settings name (the one rule)."""
    from clipstyle.workflows.models import load_model

    return load_model("G", s.model_keys()["G"], device, progress=not quiet)


def invert_z(latents: "str | Path | InvertZSettings | None" = None, /, *, G: Any = None, device: str = "auto",
             callback: Any = None, stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True,
             **options: Any) -> Run:
    """Find the z whose mapping gives each latent's w (:func:`clipstyle.inversion.invert_mapping`).

    ``latents`` is the latent file or an :class:`~clipstyle.workflows.photo.InvertZSettings`; ``options`` the
    other settings by name. ``truncation``/``truncation_cutoff`` left unset are the ones recorded in the file
    (else psi 1, all rows): the truncation is undone before the inversion. ``G``: the generator (default: the
    one rule for latent files).

    Returns:
        A :class:`Run` without an optimization: ``ws`` (the input), ``z`` ``[N, z_dim]``, ``extra_json``
        with ``residual`` (relative, per latent), ``notes``; ``extra_arrays`` ``row_z``/``row_residual`` for a
        W+ input.

    Raises:
        SettingsError, LatentFileError, CheckpointError.
    """
    import numpy as np

    from clipstyle.inversion.mapping_inverse import invert_mapping
    from clipstyle.latents.context import read_context
    from clipstyle.pipelines.common import pick_device
    from clipstyle.workflows.photo import InvertZSettings

    s = InvertZSettings.of(latents, **options)
    path = Path(s.latents)
    ctx = read_context(path)  # the file's truncation unless told otherwise
    truncation, truncation_cutoff = ctx.truncation_or(s.truncation), ctx.cutoff_or(s.truncation_cutoff)
    dev = pick_device(device, G)
    G = G.to(dev) if G is not None else load_model_for_latents(s, dev, quiet)
    ws, _, c_file, meta = start_from_latents(path, G, dev)
    c = c_file if c_file is not None and s.class_idx is None else labels(G.c_dim, s.class_idx, ws.shape[0], dev)
    rows_differ = bool((ws != ws[:, :1]).any())
    inv = invert_mapping(G, ws if rows_differ else ws[:, 0], c if G.c_dim > 0 else None,
                         truncation_psi=truncation, truncation_cutoff=truncation_cutoff, refine_steps=s.refine_steps,
                         starts=s.starts, hops=20 if s.starts > 0 else 0)
    info = {"network": meta.get("network") or s.network, "source_latents": str(path), "truncation_psi": truncation,
            "truncation_cutoff": truncation_cutoff, "residual": inv.residual.tolist(),
            "least_squares_layers": list(inv.least_squares_layers), "notes": list(inv.notes),
            "rows_differ": rows_differ,
            "z_convention": "mapping(z, c, truncation_psi) ≈ ws; z on the sphere of radius sqrt(z_dim)"}
    arrays = {}
    if inv.row_z is not None:
        arrays = {"row_z": inv.row_z.numpy(), "row_residual": inv.row_residual.numpy().astype(np.float64)}
    return PhotoRun(name=f"{path.stem}_z", result=None, settings={"command": "invert-z", **info},
                    network=G.describe(), ws_=ws.cpu(), z=inv.z, c=c if G.c_dim > 0 else None, extra_json=info,
                    extra_arrays=arrays, images_=np.zeros([1, 1, 1, 3], np.uint8), latent_meta=info)
