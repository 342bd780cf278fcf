"""The web UI's Adapt tab: make a network for a new domain from two words (``clipstyle adapt``, StyleGAN-NADA).

:func:`adapt_stream` does the work without Gradio (tested directly); :func:`build_tab` lays the tab out inside
the app's ``gr.Blocks`` and wires it (endpoint ``/adapt``; Stop keeps the best network so far).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clipstyle.ui.runner import StopFlags, preview, status_html, stream

__all__ = ["adapt_stream", "build_tab", "run_files"]

#: The files of an adapt run folder the tab offers for download.
OFFERED = ("generator.safetensors", "result.png", "progress.gif", "run.json", "latents.npz")


def run_files(folder: Path) -> list[str]:
    """The offered files that exist in a run folder."""
    return [str(Path(folder) / n) for n in OFFERED if (Path(folder) / n).is_file()]


def adapt_stream(models: Any, source: str, target: str, steps: int, layers: str, seed: int, *,
                 outdir: str | Path, stop: Any = None, preview_every: int = 5
                 ) -> Iterator[tuple[str, Any]]:
    """Run ``adapt`` on the UI's network and CLIP model; yield ``("progress", (StepInfo, image))`` while it trains
    and finally ``("done", (run, run folder))``.

    Args:
        models: the UI's :class:`~clipstyle.ui.runner.Models` (its ``G``, ``guide``, ``lock``, ``config``).
        source, target, steps, layers, seed: as ``clipstyle adapt``'s options (the others keep their defaults,
            CLIP is the UI's model).
        outdir: where the run folder is written. stop: a ``threading.Event`` (set: stop, keep the best).

    Raises:
        AdaptSettingsError (a UsageError): bad settings, before anything runs; the pipeline's errors.
    """
    from clipstyle.pipelines.adapt import adapt
    from clipstyle.workflows.adapt import AdaptSettings

    cfg = models.config
    settings = AdaptSettings(network=cfg.network, source=source, target=target or None, steps=int(steps),
                             layers=layers, seed=int(seed), clip_model=cfg.clip_model,
                             clip_pretrained=cfg.clip_pretrained)
    every = max(1, int(preview_every))

    def job(report: Callable[..., None]) -> Any:
        def callback(info, images):
            if info.step % every == 0 or info.step + 1 == info.steps:
                report(info, preview(images))

        return adapt(settings, G=models.G, guide=models.guide, device=str(models.device), callback=callback,
                     stop=stop.is_set if stop is not None else None)

    for kind, payload in stream(job, models.lock, stop):
        if kind == "progress":
            yield kind, payload
        else:
            yield kind, (payload, payload.save(outdir))


def build_tab(models: Any, *, outdir: str | Path | None = None, stops: StopFlags | None = None) -> None:
    """Add the Adapt tab to the ``gr.Blocks`` being built (call inside its ``with`` block)."""
    import gradio as gr

    from clipstyle.ui.app import _session
    from clipstyle.ui.errors import describe

    stops = stops or StopFlags()
    out = Path(outdir if outdir is not None else models.config.outdir)

    def run(source: str, target: str, steps: float, layers: str, seed: float, request: gr.Request):
        flag = stops.new(_session(request))
        try:
            for kind, payload in adapt_stream(models, source, target, int(steps), layers, int(seed), outdir=out,
                                              stop=flag, preview_every=models.config.preview_every):
                if kind == "progress":
                    info, img = payload
                    text = f"step {info.step + 1}/{info.steps} · loss {info.loss:.4f}"
                    yield img, status_html(info.step + 1, info.steps, text, "adapt"), gr.skip(), gr.skip()
                else:
                    result, folder = payload
                    r = result.result
                    text = (f"stopped after {r.steps_done} steps; kept the best network (loss {r.best_loss:.4f})"
                            if result.interrupted else f"done: {r.steps_done} steps → {folder.name}")
                    yield gr.skip(), status_html(r.steps_done, int(steps), text, "adapt"), result.image, run_files(folder)
        except Exception as exc:  # noqa: BLE001 - classified by type: the CLI's line, a bug said to be one
            raise gr.Error(describe(exc)) from None

    def halt(request: gr.Request) -> None:
        stops.stop(_session(request))

    with gr.Tab("Adapt"):
        gr.Markdown("Make a new network from two words (StyleGAN-NADA): every seed and latent of this network then "
                    "renders in the new domain. The result grid shows the network's images on top, the adapted "
                    "network's below; generator.safetensors is the new network.")
        with gr.Row():
            with gr.Column():
                source = gr.Textbox(value="photo", label="From (what the network draws now)", elem_id="adapt-source")
                target = gr.Textbox(label="To", placeholder="pencil sketch", elem_id="adapt-target")
                steps = gr.Slider(1, 2000, value=300, step=1, label="Steps", elem_id="adapt-steps")
                layers = gr.Textbox(value="auto", label="Layers (auto, all, or rows such as 0-7)")
                seed = gr.Number(value=0, precision=0, label="Seed")
                with gr.Row():
                    go = gr.Button("Adapt", variant="primary", elem_id="adapt-go")
                    stop = gr.Button("Stop", variant="stop", elem_id="adapt-stop")
            with gr.Column():
                status = gr.HTML(status_html(0, 1, "idle", "adapt"), elem_id="adapt-status")
                live = gr.Image(label="Training batch", type="numpy", format="png", height=240)
                result = gr.Image(label="Before (top) / after (bottom)", type="pil", format="png", height=280)
                files = gr.File(label="generator.safetensors, result.png, progress.gif, run.json",
                                file_count="multiple")
        go.click(run, [source, target, steps, layers, seed], [live, status, result, files], api_name="adapt",
                 show_progress="hidden", concurrency_limit=1, concurrency_id="model")
        stop.click(halt, None, None, api_name="adapt_stop", queue=False)
