"""The web UI's *Global edit* tab: StyleCLIP's global directions (Patashnik et al. 2021, §6) with two texts
and the α / β sliders; the image is re-rendered on every slider move (one forward pass).

Mount it inside the app's ``gr.Blocks`` with ``build_tab(models)``; it creates its own ``gr.Tab``. The
relevance of the loaded network and CLIP model comes from the cache (or a file typed in the tab); the
*Prepare* button computes it when it is missing (this takes long for 1024² networks: see docs/global_edits.md).
"""

from __future__ import annotations

from typing import Any

from clipstyle.errors import UsageError

__all__ = ["GlobalEditTab", "build_tab"]


class GlobalEditTab:
    """The tab's state and handlers (separate from Gradio so they can be tested without a browser).

    Args:
        models: the UI's models (``G``, ``guide``, ``lock``, ``device``), e.g. :class:`clipstyle.ui.runner.Models`.
        samples: images per channel when *Prepare* computes the relevance (StyleCLIP: 100).
    """

    def __init__(self, models: Any, samples: int = 100, cache_dir: Any = None) -> None:
        self.models, self.samples, self.cache_dir = models, samples, cache_dir
        self._editor: Any = None
        self._key: Any = None

    def _settings(self, relevance_file: str | None) -> Any:
        from clipstyle.workflows.global_edit import GlobalEditSettings

        return GlobalEditSettings(relevance=relevance_file or None, samples=self.samples)

    def editor(self, relevance_file: str | None = None, compute: bool = False, progress: Any = None) -> Any:
        """The :class:`~clipstyle.pipelines.global_edit.GlobalEditor` (built once per relevance source).

        Raises:
            ValueError: no relevance yet and ``compute`` is False (the message says to press *Prepare*).
        """
        from clipstyle.guidance.global_directions import (
            RelevanceConfig,
            relevance_cache_path,
        )
        from clipstyle.pipelines.global_edit import GlobalEditor, load_relevance

        key = relevance_file or "cache"
        if self._editor is not None and self._key == key:
            return self._editor
        settings = self._settings(relevance_file)
        G, guide = self.models.G, self.models.guide
        if not relevance_file and not compute:
            cfg = RelevanceConfig(samples=settings.samples)
            path = relevance_cache_path(G, guide, cfg, self.cache_dir)
            if not path.is_file():
                raise UsageError("no channel relevance for this network and CLIP model yet: press 'Prepare' (or give "
                                 "a relevance file)")
        rel = load_relevance(settings, G, guide, callback=progress, cache_dir=self.cache_dir)
        if not rel.complete:
            raise UsageError("the relevance computation was stopped before the end: press 'Prepare' to finish it")
        self._editor, self._key = GlobalEditor(G, guide, rel), key
        return self._editor

    def render(self, seed: float, source: str, target: str, alpha: float, beta: float,
               relevance_file: str = "") -> Any:
        """The edited image of seed ``seed`` (truncation 0.7) as uint8 ``[H, W, C]`` and a one-line status."""
        import torch

        from clipstyle.latents import start_ws
        from clipstyle.optimize.loop import to_uint8_frames

        with self.models.lock:
            ed = self.editor(relevance_file.strip() or None)
            ws, _ = start_ws(self.models.G, seed=int(seed or 0), truncation_psi=0.7)
            gd = ed.direction(source.strip() or "a face", target.strip() or "a face", float(beta))
            with torch.no_grad():
                img = ed.render(ws, gd.direction, [float(alpha)])
        status = f"{len(gd.channels)} channels with relevance ≥ {float(beta):g}"
        return to_uint8_frames(img)[0], status

    def prepare(self, relevance_file: str = "", progress: Any = None) -> str:
        """Compute (or read) the relevance now; returns a status line."""
        with self.models.lock:
            self._editor = None
            ed = self.editor(relevance_file.strip() or None, compute=True, progress=progress)
        return f"relevance ready: {ed.delta_i.shape[0]} channels ({ed.relevance.source})"


def build_tab(models: Any, samples: int = 100) -> Any:
    """Create the *Global edit* ``gr.Tab`` in the current ``gr.Blocks`` and return the :class:`GlobalEditTab`."""
    import gradio as gr

    from clipstyle.ui.errors import describe

    tab = GlobalEditTab(models, samples)
    heavy = {"concurrency_limit": 1, "concurrency_id": "model"}

    def on_render(seed, source, target, alpha, beta, relevance_file):
        try:
            return tab.render(seed, source, target, alpha, beta, relevance_file)
        except Exception as exc:  # noqa: BLE001 - classified by type: the CLI's line, a bug said to be one
            raise gr.Error(describe(exc)) from None

    def on_prepare(relevance_file, progress=gr.Progress()):
        def report(info, _images):
            progress((info.step + 1) / max(info.steps, 1), desc="relevance (channels)")
        try:
            return tab.prepare(relevance_file, progress=report)
        except Exception as exc:  # noqa: BLE001 - classified by type: the CLI's line, a bug said to be one
            raise gr.Error(describe(exc)) from None

    with gr.Tab("Global edit"):
        with gr.Row():
            with gr.Column():
                seed = gr.Number(value=0, precision=0, label="Seed")
                source = gr.Textbox(value="a face", label="Neutral text (the image as it is)")
                target = gr.Textbox(value="a face with a beard", label="Target text")
                alpha = gr.Slider(-10, 10, value=3, step=0.1, label="α (strength)")
                beta = gr.Slider(0, 0.4, value=0.12, step=0.005, label="β (disentanglement threshold)")
                relevance = gr.Textbox(value="", label="Relevance file (optional: fs3.npy, delta_i_c.npy or ours)")
                prepare = gr.Button("Prepare (compute the relevance once)")
                status = gr.Markdown("")
            image = gr.Image(label="Edited", type="numpy", format="png", elem_id="global-image")
        inputs = [seed, source, target, alpha, beta, relevance]
        gr.on([alpha.change, beta.change, alpha.release, beta.release, seed.change, source.submit, target.submit],
              on_render, inputs, [image, status], api_name="global_edit", trigger_mode="always_last", **heavy)
        prepare.click(on_prepare, [relevance], status, api_visibility="private", **heavy)
    return tab
