"""The Styleblocks tab: one slider per styleblock row scaling it (about 0 or ``w_avg``), rendered live
(:func:`clipstyle.latents.styleblocks.scale_rows`). Endpoint ``/styleblocks`` (seed, around, one factor per row)."""

from __future__ import annotations

import gradio as gr

from clipstyle.ui.tabs.common import HEAVY, Context, guarded, int_or_none

__all__ = ["build"]


def build(ctx: Context, demo: gr.Blocks) -> None:
    """Lay out the Styleblocks tab; ``demo.load`` renders it once when the page opens."""
    models = ctx.models

    def styleblocks_render(seed: float, around: str, *factors: float):
        import torch

        from clipstyle.latents import start_ws
        from clipstyle.latents.styleblocks import render_ws, scale_rows

        with models.lock:
            ws, _ = start_ws(models.G, seed=int_or_none(seed))
            center = models.G.w_avg.detach().to(torch.float32) if around == "avg" else None
            return render_ws(models.G, scale_rows(ws, [float(f) for f in factors], center))[0]

    with gr.Row():
        with gr.Column():
            sb_seed = gr.Number(value=0, precision=0, label="Seed", elem_id="sb-seed")
            sb_around = gr.Radio(["zero", "avg"], value="zero", label="Scale about 0 or w_avg")
            sliders = [gr.Slider(-2, 3, value=1, step=0.05, label=f"row {lab}") for lab in ctx.row_labels]
        sb_image = gr.Image(label="Rendered", type="numpy", format="png", elem_id="sb-image")
    inputs = [sb_seed, sb_around, *sliders]
    render = guarded(ctx, styleblocks_render)
    gr.on([sb_seed.change, sb_around.change, *[s.release for s in sliders]], render, inputs, sb_image,
          api_name="styleblocks", trigger_mode="always_last", **HEAVY)
    demo.load(render, inputs, sb_image, api_visibility="private", **HEAVY)
