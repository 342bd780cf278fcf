"""The Blend tab: the loaded network A blended with a network B chosen among the operator's ``--network``
names (:func:`clipstyle.pipelines.creative.blend`). Endpoint ``/blend`` (network B, resolution, smooth, seed)."""

from __future__ import annotations

import gradio as gr

from clipstyle.ui.tabs.common import HEAVY, Context, guarded, int_or_none

__all__ = ["build"]


def build(ctx: Context) -> None:
    """Lay out the Blend tab."""
    config, models = ctx.config, ctx.models

    def blend_render(network_b: str, at: str, smooth: float, seed: float):
        from clipstyle.pipelines.creative import blend, generate
        from clipstyle.render.files import side_by_side

        s = str(int_or_none(seed) or 0)
        with models.lock:
            G_b = models.network(str(network_b or "").strip())  # UsageError unless an allowed name
            blended = blend(config.network, network_b, at=int(at), smooth=float(smooth) or None,
                            device=models.device, G_a=models.G, G_b=G_b)
            return side_by_side(generate(seeds=s, G=models.G, device=models.device).images[0],
                                generate(seeds=s, G=blended, device=models.device).images[0])

    names = list(config.networks)
    with gr.Row():
        with gr.Column():
            bl_net = gr.Dropdown(names, value=names[-1], label="Network B (higher resolutions; the operator's "
                                 "--network list)", elem_id="blend-network", allow_custom_value=True)
            res = [str(2**k) for k in range(2, int(models.G.img_resolution).bit_length())]
            bl_at = gr.Dropdown(res, value=res[len(res) // 2], label="Cut resolution (≤ from A)")
            bl_smooth = gr.Slider(0, 3, value=0, step=0.25, label="Smooth switch (octaves)")
            bl_seed = gr.Number(value=0, precision=0, label="Seed")
            bl_go = gr.Button("Blend", variant="primary", elem_id="blend-go")
        bl_image = gr.Image(label="A | blended", type="numpy", format="png", elem_id="blend-image")
    bl_go.click(guarded(ctx, blend_render), [bl_net, bl_at, bl_smooth, bl_seed], bl_image, api_name="blend",
                **HEAVY)
