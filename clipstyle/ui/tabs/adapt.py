"""The Adapt tab: a network for a new domain from two words (``clipstyle adapt``, StyleGAN-NADA).

:func:`adapt_stream` does the work without Gradio (tested directly); :func:`build_tab` lays the tab out inside
the app's ``gr.Blocks`` (endpoint ``/adapt``; Stop and ``--max-seconds`` keep the best network so far;
``--max-steps`` caps the steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clipstyle.ui.runner import preview, status_html, stream

__all__ = ["OFFERED", "adapt_stream", "build_tab"]

#: The files of an adapt run folder the tab offers for download.
OFFERED = ("generator.safetensors", "result.png", "progress.gif", "run.json", "latents.npz")


def adapt_stream(models: Any, source: str, target: str, steps: int, layers: str, seed: int, *,
                 outdir: str | Path | None = None, stop: Any = None, preview_every: int = 5
                 ) -> Iterator[tuple[str, Any]]:
    """Run the registry's ``adapt`` workflow on the UI's network and CLIP model; yield ``("progress", (StepInfo,
    image))`` while it trains and finally ``("done", run)`` (saved under ``outdir`` too when given, as
    ``("done", (run, folder))``).

    Args:
        models: the UI's :class:`~clipstyle.ui.runner.Models` (its ``cache``, ``lock`` and ``config``).
        source, target, steps, layers, seed: as ``clipstyle adapt``'s options (the others keep their defaults,
            CLIP is the UI's model).
        stop: a stop condition (a :class:`~clipstyle.ui.runner.Job` or ``threading.Event``): set = stop, keep the
            best.

    Raises:
        SettingsError: bad settings, before the model lock is taken; the pipeline's errors.
    """
    from clipstyle.workflows.adapt import AdaptSettings
    from clipstyle.workflows.registry import get_workflow

    cfg = models.config
    settings = AdaptSettings(network=cfg.network, source=source, target=target or None, steps=int(steps),
                             layers=layers, seed=int(seed), clip_model=cfg.clip_model,
                             clip_pretrained=cfg.clip_pretrained)
    every = max(1, int(preview_every))
    halted = getattr(stop, "stopped", None) or getattr(stop, "is_set", None)

    def job(report: Callable[..., None]) -> Any:
        def callback(info, images):
            if info.step % every == 0 or info.step + 1 == info.steps:
                report(info, preview(images))

        return get_workflow("adapt").run(settings, models=models.cache, callback=callback, stop=halted)

    for kind, payload in stream(job, models.lock, stop):
        if kind == "progress" or outdir is None:
            yield kind, payload
        else:
            yield kind, (payload, payload.save(outdir))


def build_tab(models: Any) -> None:
    """Add the Adapt tab's contents to the ``gr.Tab`` being built; ``models.ui`` is the app's Context."""
    import gradio as gr

    from clipstyle.ui.tabs.common import HEAVY, guarded

    ctx = models.ui
    lim = ctx.limits

    def run(source: str, target: str, steps: float, layers: str, seed: float, request: gr.Request):
        n = ctx.cap(steps, lim.max_steps, "--max-steps", "steps")
        job = ctx.job(request)
        for kind, payload in adapt_stream(models, source, target, n, layers, int(seed), stop=job,
                                          preview_every=ctx.config.preview_every):
            if kind == "progress":
                info, img = payload
                text = f"step {info.step + 1}/{info.steps} · loss {info.loss:.4f}"
                yield img, status_html(info.step + 1, info.steps, text, "adapt"), gr.skip(), gr.skip()
            else:
                folder, files = ctx.publish(payload, request, OFFERED)
                r = payload.result
                text = (f"stopped after {r.steps_done} steps by {job.why()}; kept the best network (loss "
                        f"{r.best_loss:.4f})" if payload.interrupted else f"done: {r.steps_done} steps → {folder.name}")
                yield gr.skip(), status_html(r.steps_done, n, text, "adapt"), payload.image, files

    def halt(request: gr.Request) -> None:
        ctx.stops.stop(ctx.session(request))

    gr.Markdown("Make a new network from two words (StyleGAN-NADA): every seed and latent of this network then "
                "renders in the new domain. The result grid shows the network's images on top, the adapted "
                "network's below; generator.safetensors is the new network.")
    with gr.Row():
        with gr.Column():
            source = gr.Textbox(value="photo", label="From (what the network draws now)", elem_id="adapt-source")
            target = gr.Textbox(label="To", placeholder="pencil sketch", elem_id="adapt-target")
            steps = gr.Slider(1, lim.max_steps, value=min(300, lim.max_steps), step=1, label="Steps",
                              elem_id="adapt-steps")
            layers = gr.Textbox(value="auto", label="Layers (auto, all, or rows such as 0-7)")
            seed = gr.Number(value=0, precision=0, label="Seed")
            with gr.Row():
                go = gr.Button("Adapt", variant="primary", elem_id="adapt-go")
                stop = gr.Button("Stop", variant="stop", elem_id="adapt-stop")
        with gr.Column():
            status = gr.HTML(status_html(0, 1, "idle", "adapt"), elem_id="adapt-status")
            live = gr.Image(label="Training batch", type="numpy", format="png", height=240)
            result = gr.Image(label="Before (top) / after (bottom)", type="pil", format="png", height=280)
            files = gr.File(label="generator.safetensors, result.png, progress.gif, run.json", file_count="multiple")
    go.click(guarded(ctx, run), [source, target, steps, layers, seed], [live, status, result, files],
             api_name="adapt", show_progress="hidden", **HEAVY)
    stop.click(halt, None, None, api_name="adapt_stop", queue=False)
