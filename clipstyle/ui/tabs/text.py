"""The Text tab: :func:`clipstyle.pipelines.text.text_to_image` with a live preview, Stop and downloads.

Endpoints: ``/text_generate`` (the tab, streamed), ``/text_to_image`` (prompt, steps → image), ``/stop``.
An image prompt comes from an upload or the operator's allowed folders, never from a prompt's ``@path``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from clipstyle.errors import UsageError
from clipstyle.ui.runner import preview, stream
from clipstyle.ui.sources import IMAGE_SUFFIXES
from clipstyle.ui.tabs.common import HEAVY, Context, guarded, int_or_none

__all__ = ["build", "check_prompt"]


def check_prompt(prompt: str) -> None:
    """Refuse ``@path`` image prompts (they would read server files); the grammar is checked by the pipeline.

    Raises:
        UsageError: the prompt names an image file.
    """
    from clipstyle.guidance.prompts import parse_prompts

    if prompt and prompt.strip() and any(p.is_image for p in parse_prompts(prompt)):
        raise UsageError("'@file' image prompts cannot name server files in the web UI: upload the picture "
                         "under 'Image prompt' instead")


def build(ctx: Context) -> None:
    """Lay out the Text tab and wire its events."""
    from clipstyle.guidance.recipes import list_recipes

    config, models, lim = ctx.config, ctx.models, ctx.limits

    def run_text(prompt, steps, seed, blocks, mix_seed, mix_rows, recipe, batch, image_upload, image_choice,
                 job):
        from clipstyle.workflows.registry import get_workflow
        from clipstyle.workflows.text import TextSettings

        check_prompt(prompt)
        n = ctx.cap(steps, lim.max_steps, "--max-steps", "steps")
        batch = ctx.cap(batch or 1, lim.max_batch, "--max-batch", "batch")
        image = ctx.picture(job.request, image_upload, image_choice, "image prompt") \
            if image_upload or image_choice else None
        mix = [f"{int(mix_seed)}:{','.join(str(int(r)) for r in mix_rows)}"] \
            if mix_rows and int_or_none(mix_seed) is not None else []
        every = max(1, int(config.preview_every))

        settings = TextSettings(prompt=prompt, network=config.network, clip_model=config.clip_model,
                                clip_pretrained=config.clip_pretrained, steps=n, seed=int_or_none(seed),
                                blocks=",".join(str(int(r)) for r in blocks) if blocks else None, mix=tuple(mix),
                                recipe=recipe or None, batch=batch, image_prompt=str(image) if image else None,
                                save_every=max(1, n // 40))  # checked here, before the model lock

        def work(report=None):
            def callback(info, images):
                if report is not None and (info.step % every == 0 or info.step + 1 == info.steps):
                    report(info, preview(images))

            return get_workflow("text").run(settings, models=models.cache, callback=callback, stop=job.stopped)
        return n, work

    def text_generate(prompt: str, steps: float, seed: float, blocks: list, mix_seed: float, mix_rows: list,
                      recipe: str | None, batch: float, image_upload: Any, image_choice: str | None,
                      request: gr.Request):
        job = ctx.job(request)
        job.request = request  # checks and uploads first, outside the model lock
        n, work = run_text(prompt, steps, seed, blocks, mix_seed, mix_rows, recipe, batch, image_upload,
                           image_choice, job)
        for kind, payload in stream(work, models.lock, job):
            if kind == "progress":
                info, img = payload
                text = f"step {info.step + 1}/{info.steps} · loss {info.loss:.4f}"
                yield img, ctx.status(info.step + 1, info.steps, text, "text"), gr.skip(), gr.skip()
            else:
                run = payload
                run_dir, files = ctx.publish(run, request)
                r = run.result
                text = (f"stopped after {r.steps_done} steps by {job.why()}; kept the best (loss "
                        f"{r.best_loss:.4f} at step {r.best_step + 1})" if run.interrupted else
                        f"done: {r.steps_done} steps, best loss {r.best_loss:.4f} → {run_dir.name}")
                yield run.image, ctx.status(r.steps_done, n, text, "text"), run.image, files

    def api_text_to_image(prompt: str, steps: float, request: gr.Request):
        job = ctx.job(request)
        job.request = request

        work = run_text(prompt, steps, -1, [], -1, [], "", 1, None, None, job)[1]
        for kind, payload in stream(lambda report: work(), models.lock, job):
            if kind == "done":
                return payload.image

    def stop(request: gr.Request) -> None:
        ctx.stops.stop(ctx.session(request))  # the running job ends after its current step, keeping the best

    recipes = list_recipes()
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", elem_id="text-prompt",
                                placeholder="a smiling child | blond hair:0.5 | glasses:-1")
            steps = gr.Slider(1, lim.max_steps, value=min(100, lim.max_steps), step=1, label="Steps",
                              elem_id="text-steps")
            seed = gr.Number(value=-1, precision=0, label="Seed (-1: start at w_avg)", elem_id="text-seed")
            batch = gr.Slider(1, lim.max_batch, value=1, step=1, label="Batch (images optimized together)",
                              elem_id="text-batch", visible=lim.max_batch > 1)
            blocks = gr.CheckboxGroup(ctx.row_choices, label="Styleblocks to optimize (none: all)")
            with gr.Row():
                mix_seed = gr.Number(value=-1, precision=0, label="Mixing source seed")
                mix_rows = gr.CheckboxGroup(ctx.row_choices, label="Rows fixed to the source")
            recipe = gr.Dropdown([("none", "")] + [(f"{r.name}: {r.description}", r.name) for r in recipes],
                                 value="", label="Recipe (a curated edit: its directional loss and blocks)")
            with gr.Accordion("Image prompt (match a picture)", open=False):
                image_upload = gr.File(label="Upload a picture", file_types=list(IMAGE_SUFFIXES),
                                       type="filepath", elem_id="text-image-upload")
                image_choice = gr.Dropdown([""] + sorted(ctx.allowed.images), value="", allow_custom_value=True,
                                           label="…or one from the server's allowed folders",
                                           elem_id="text-image-choice")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="text-generate")
                halt = gr.Button("Stop", variant="stop", elem_id="text-stop")
        with gr.Column():
            status = gr.HTML(ctx.status(0, 1, "idle", "text"), elem_id="text-status")
            live = gr.Image(label="Preview", type="numpy", elem_id="text-preview", format="png", height=280,
                            elem_classes="cs-big")
            result = gr.Image(label="Result", type="pil", elem_id="text-result", format="png", height=280,
                              elem_classes="cs-big")
            files = gr.File(label="result.png, progress.gif, latents.npz", file_count="multiple",
                            elem_id="text-files")
    go.click(guarded(ctx, text_generate),
             [prompt, steps, seed, blocks, mix_seed, mix_rows, recipe, batch, image_upload, image_choice],
             [live, status, result, files], api_name="text_generate", show_progress="hidden", **HEAVY)
    halt.click(stop, None, None, api_name="stop", queue=False)
    api_prompt = gr.Textbox(visible=False)
    api_steps = gr.Number(value=10, visible=False)
    api_image = gr.Image(type="pil", visible=False, format="png")
    gr.Button(visible=False).click(guarded(ctx, api_text_to_image), [api_prompt, api_steps], api_image,
                                   api_name="text_to_image", **HEAVY)
