"""The Photo tab: the real photo pipelines on the UI's loaded models — Align
(:func:`clipstyle.pipelines.align.align`), Encode with the operator's ``--encoder``, Project and Edit
(:func:`clipstyle.pipelines.photo.project` / ``edit``) with perceptual LPIPS or none, e4e start, pivotal
tuning and the ArcFace identity loss of ``--id-weights`` — what ``clipstyle align/encode/project/edit`` offer.

Each button runs its registered workflow (:func:`clipstyle.workflows.registry.get_workflow`) on settings built from
the tab, with the UI's :class:`~clipstyle.workflows.models.ModelCache`. Endpoints (the registry's ``ui`` names)
``/photo_align``, ``/photo_encode`` (only with ``--encoder``), ``/photo_project``, ``/photo_edit``; all take the tab's inputs
in order (photo upload, allowed photo name, align, prompt, edit steps, projection steps, space, perceptual,
e4e start, tune, tune steps, identity, identity weight, seed) and return (before, after, status, files);
``/photo_align`` also returns the aligned picture's name (``upload:…``, selected as the photo) and clears the upload.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gradio as gr

from clipstyle.ui.runner import preview, stream
from clipstyle.ui.sources import IMAGE_SUFFIXES
from clipstyle.ui.tabs.common import HEAVY, Context, guarded
from clipstyle.workflows.photo import AlignSettings, EditSettings, EncodeSettings, ProjectSettings
from clipstyle.workflows.registry import get_workflow

__all__ = ["build"]


def build(ctx: Context) -> None:
    """Lay out the Photo tab and wire its buttons."""
    config, models, lim = ctx.config, ctx.models, ctx.limits
    every = max(1, int(config.preview_every))

    def photo_run(action: str, upload: Any, choice: str | None, align: bool, prompt: str, steps: float,
                  project_steps: float, space: str, perceptual: str, e4e_start: bool, tune: bool,
                  tune_steps: float, use_identity: bool, id_lambda: float, seed: float, request: gr.Request):
        job = ctx.job(request)
        photo = ctx.picture(request, upload, choice, "photo")  # checks first, outside the model lock
        n_edit = ctx.cap(steps, lim.max_steps, "--max-steps", "edit steps")
        n_proj = ctx.cap(project_steps, lim.max_steps, "--max-steps", "projection steps")
        n_tune = ctx.cap(tune_steps, lim.max_steps, "--max-steps", "tuning steps") if tune else 350
        if action == "edit":
            from clipstyle.ui.tabs.text import check_prompt

            check_prompt(prompt)
        if action == "encode" and config.encoder is None:
            from clipstyle.errors import UsageError

            raise UsageError("this server has no e4e encoder (start it with clipstyle ui --encoder E4E.pt)")
        notes: list[str] = []

        # the workflow's settings, checked here before the model lock (the registry's contract)
        ident = config.id_weights if use_identity else None
        if action == "align":
            settings = AlignSettings(photo=str(photo), size=min(1024, lim.max_resolution))
        elif action == "encode":
            settings = EncodeSettings(photo=str(photo), encoder=config.encoder, network=config.network,
                                      align=bool(align), id_weights=ident)
        else:
            common = dict(network=config.network, perceptual=perceptual, align=bool(align), id_weights=ident,
                          lpips_weights=config.lpips_weights if perceptual == "lpips" else None, tune=bool(tune),
                          tune_steps=n_tune, seed=int(seed or 0), save_every=max(1, n_proj // 20),
                          encoder=config.encoder if e4e_start else None)
            if action == "project":
                settings = ProjectSettings(photo=str(photo), steps=n_proj, space=space,
                                           init="e4e" if e4e_start else "mean", **common)
            else:
                settings = EditSettings(photo_or_latents=str(photo), prompt=prompt, steps=n_edit,
                                        project_steps=n_proj, project_space=space, clip_model=config.clip_model,
                                        clip_pretrained=config.clip_pretrained, id_lambda=float(id_lambda), **common)

        def work(report):
            def callback(info, images):
                if info.step % every == 0 or info.step + 1 == info.steps:
                    report(info, preview(images))

            said = {} if action == "align" else {"notify": notes.append}  # the pipelines' fallback notes
            return get_workflow(action).run(settings, models=models.cache, callback=callback, stop=job.stopped,
                                            quiet=True, **said)

        for kind, payload in stream(work, models.lock, job):
            if kind == "progress":
                info, img = payload
                text = f"{action}: step {info.step + 1}/{info.steps} · loss {info.loss:.4f}"
                skips = (gr.skip(), gr.skip()) if action == "align" else ()
                yield gr.skip(), img, ctx.status(info.step + 1, info.steps, text, "photo"), gr.skip(), *skips
            elif action == "align":  # a picture, no latent: it becomes this session's next photo
                out = ctx.sessions.folder(ctx.session(request)) / "runs" / f"{photo.stem}_aligned.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                payload.image.save(out)
                name, _ = ctx.take_upload(request, out, IMAGE_SUFFIXES)
                faces = payload.extra_json.get("faces", 1)
                text = f"align: done ({faces} face{'s' if faces != 1 else ''}; the largest) → {name}, the photo now"
                yield (str(photo), payload.image, ctx.status(1, 1, text, "photo"), [str(out)],
                       name, None)
            else:
                run = payload
                names = ("result.png", "target.png", "before_after.png", "latents.npz", "progress.gif")
                run_dir, files = ctx.publish(run, request, names)
                before = next((f for f in files if f.endswith("target.png")), str(photo))
                sim = run.extra_json.get("identity_similarity") if run.extra_json else None
                text = f"{action}: {'stopped by ' + job.why() + ', kept the best' if run.interrupted else 'done'}" \
                       f"{f' · identity {sim:.3f}' if sim is not None else ''} → {run_dir.name}"
                if notes:
                    text += " (" + "; ".join(notes) + ")"
                yield before, run.image, ctx.status(1, 1, text, "photo"), files

    def stop(request: gr.Request) -> None:
        ctx.stops.stop(ctx.session(request))

    def bound(action: str):
        def handler(upload, choice, align, prompt, steps, project_steps, space, perceptual, e4e_start, tune,
                    tune_steps, use_identity, id_lambda, seed, request: gr.Request):
            yield from photo_run(action, upload, choice, align, prompt, steps, project_steps, space, perceptual,
                                 e4e_start, tune, tune_steps, use_identity, id_lambda, seed, request)
        handler.__name__ = f"photo_{action}"
        return guarded(ctx, handler)

    has_encoder, has_identity = config.encoder is not None, config.id_weights is not None
    can_align = importlib.util.find_spec("dlib") is not None
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Photo (upload)", file_types=list(IMAGE_SUFFIXES), type="filepath",
                             elem_id="photo-upload")
            choice = gr.Dropdown([""] + sorted(ctx.allowed.images), value="", allow_custom_value=True,
                                 label="…or a photo from the server's allowed folders", elem_id="photo-choice")
            align = gr.Checkbox(label="Align the face first (FFHQ crop)", value=False, elem_id="photo-align-first",
                                visible=can_align)
            prompt = gr.Textbox(label="Edit prompt", elem_id="photo-prompt", placeholder="a smiling face")
            with gr.Row():
                steps = gr.Slider(1, lim.max_steps, value=min(100, lim.max_steps), step=1, label="Edit steps",
                                  elem_id="photo-steps")
                project_steps = gr.Slider(1, lim.max_steps, value=min(200, lim.max_steps), step=1,
                                          label="Projection steps", elem_id="photo-project-steps")
            with gr.Row():
                space = gr.Radio(["w", "w+"], value="w", label="Latent space")
                perceptual = gr.Radio(["lpips", "none"], value="lpips", label="Perceptual loss (none: pixels)",
                                      elem_id="photo-perceptual")
            e4e_start = gr.Checkbox(label="Start the projection from the e4e encoding", value=has_encoder,
                                    visible=has_encoder, elem_id="photo-e4e")
            with gr.Row():
                tune = gr.Checkbox(label="Pivotal tuning after the projection", elem_id="photo-tune")
                tune_steps = gr.Slider(1, lim.max_steps, value=min(50, lim.max_steps), step=1, label="Tuning steps",
                                       elem_id="photo-tune-steps")
            with gr.Row(visible=has_identity):
                use_identity = gr.Checkbox(label="ArcFace identity loss", value=has_identity,
                                           elem_id="photo-identity")
                id_lambda = gr.Number(value=0.1, label="Identity weight", elem_id="photo-id-lambda")
            seed = gr.Number(value=0, precision=0, label="Seed", elem_id="photo-seed")
            with gr.Row():
                btns = {"align": gr.Button("Align", elem_id="photo-align", visible=can_align),
                        "encode": gr.Button("Encode", elem_id="photo-encode", visible=has_encoder),
                        "project": gr.Button("Project", variant="primary", elem_id="photo-project"),
                        "edit": gr.Button("Edit", variant="primary", elem_id="photo-edit")}
                halt = gr.Button("Stop", variant="stop", elem_id="photo-stop")
            if not has_encoder:
                gr.Markdown("Encode and the e4e start need an encoder: `clipstyle ui --encoder e4e_ffhq_encode.pt`.")
        with gr.Column():
            status = gr.HTML(ctx.status(0, 1, "idle", "photo"), elem_id="photo-status")
            with gr.Row():
                before = gr.Image(label="Before", type="filepath", format="png", elem_id="photo-before",
                                  elem_classes="cs-big", height=260)
                after = gr.Image(label="After", type="pil", format="png", elem_id="photo-after",
                                 elem_classes="cs-big", height=260)
            files = gr.File(file_count="multiple", elem_id="photo-files")
    inputs = [upload, choice, align, prompt, steps, project_steps, space, perceptual, e4e_start, tune, tune_steps,
              use_identity, id_lambda, seed]
    for action, btn in btns.items():
        outputs = [before, after, status, files] + ([choice, upload] if action == "align" else [])
        btn.click(bound(action), inputs, outputs, api_name=get_workflow(action).ui, show_progress="hidden", **HEAVY)
    halt.click(stop, None, None, queue=False, api_visibility="private")
