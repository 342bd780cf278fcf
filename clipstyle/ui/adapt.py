"""The web UI's Adapt tab: make a network for a new domain from two words (the registry's ``adapt`` workflow,
StyleGAN-NADA). Mounted by :mod:`clipstyle.ui.app` (``EXTRA_TABS``) inside its ``gr.Tab``.

:func:`adapt_stream` does the work (tested directly, without a server); :func:`build_tab` lays the tab out and wires
it (endpoint ``/adapt``; Stop, or the server's time limit, keeps the best network so far).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from clipstyle.ui.runner import preview, stream

__all__ = ["OFFERED", "adapt_settings", "adapt_stream", "build_tab"]

#: The files of an adapt run folder the tab offers for download.
OFFERED = ("generator.safetensors", "result.png", "progress.gif", "run.json", "latents.npz")


def adapt_settings(config: Any, source: str, target: str, steps: int, layers: str, seed: int) -> Any:
    """The :class:`~clipstyle.workflows.adapt.AdaptSettings` of a request on the UI's network and CLIP model
    (other options keep their defaults). Raises SettingsError before anything runs."""
    from clipstyle.workflows.adapt import AdaptSettings

    return AdaptSettings(network=config.network, source=source, target=target or None, steps=int(steps),
                         layers=layers or "auto", seed=int(seed), clip_model=config.clip_model,
                         clip_pretrained=config.clip_pretrained)


def adapt_stream(models: Any, settings: Any, *, stop: Any = None, preview_every: int = 5
                 ) -> Iterator[tuple[str, Any]]:
    """Run the ``adapt`` workflow with the UI's models; yield ``("progress", (StepInfo, image))`` while it trains
    and finally ``("done", run)``.

    Args:
        models: the UI's :class:`~clipstyle.ui.runner.Models` (its ``cache``, ``lock``).
        settings: :func:`adapt_settings`. stop: a :class:`~clipstyle.ui.runner.Job` or ``threading.Event``.
    """
    from clipstyle.workflows.registry import get_workflow

    every = max(1, int(preview_every))
    stopped = getattr(stop, "stopped", None) or (stop.is_set if stop is not None else None)

    def job(report: Any) -> Any:
        def callback(info, images):
            if info.step % every == 0 or info.step + 1 == info.steps:
                report(info, preview(images))

        return get_workflow("adapt").run(settings, models=models.cache, callback=callback, stop=stopped)

    yield from stream(job, models.lock, stop)


def build_tab(models: Any) -> None:
    """Lay out the Adapt tab (called inside the app's ``gr.Tab``; ``models.ui`` is the app's context)."""
    from clipstyle.ui.tabs.common import HEAVY, guarded

    ctx = models.ui
    lim = ctx.limits

    def run(source: str, target: str, steps: float, layers: str, seed: float, request: gr.Request):
        n = ctx.cap(steps, lim.max_steps, "--max-steps", "steps")
        settings = adapt_settings(ctx.config, source, target, n, layers, int(seed or 0))  # before the lock
        job = ctx.job(request)
        for kind, payload in adapt_stream(models, settings, stop=job, preview_every=ctx.config.preview_every):
            if kind == "progress":
                info, img = payload
                text = f"step {info.step + 1}/{info.steps} · loss {info.loss:.4f}"
                yield img, ctx.status(info.step + 1, info.steps, text, "adapt"), gr.skip(), gr.skip()
            else:
                result = payload
                folder, files = ctx.publish(result, request, OFFERED)
                r = result.result
                text = (f"stopped after {r.steps_done} steps by {job.why()}; kept the best network (loss "
                        f"{r.best_loss:.4f})" if result.interrupted else f"done: {r.steps_done} steps → "
                        f"{Path(folder).name}")
                yield gr.skip(), ctx.status(r.steps_done, n, text, "adapt"), result.image, files

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
            layers = gr.Textbox(value="auto", label="Layers (auto, all, or rows such as 0-7)", elem_id="adapt-layers")
            seed = gr.Number(value=0, precision=0, label="Seed", elem_id="adapt-seed")
            with gr.Row():
                go = gr.Button("Adapt", variant="primary", elem_id="adapt-go")
                stop = gr.Button("Stop", variant="stop", elem_id="adapt-stop")
        with gr.Column():
            status = gr.HTML(ctx.status(0, 1, "idle", "adapt"), elem_id="adapt-status")
            live = gr.Image(label="Training batch", type="numpy", format="png", height=240)
            result = gr.Image(label="Before (top) / after (bottom)", type="pil", format="png", height=280)
            files = gr.File(label="generator.safetensors, result.png, progress.gif, run.json", file_count="multiple")
    go.click(guarded(ctx, run), [source, target, steps, layers, seed], [live, status, result, files],
             api_name="adapt", show_progress="hidden", **HEAVY)
    stop.click(halt, None, None, api_name="adapt_stop", queue=False)
