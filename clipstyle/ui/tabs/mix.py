"""The Mix tab: two seeds and the rows taken from B, rendered live as a grid
(the registry's ``mix`` workflow). Endpoint ``/mix`` (seed A, seed B, rows)."""

from __future__ import annotations

import gradio as gr

from clipstyle.ui.tabs.common import HEAVY, Context, guarded, int_or_none

__all__ = ["build"]


def build(ctx: Context) -> None:
    """Lay out the Mix tab."""
    models = ctx.models

    def mix_render(seed_a: float, seed_b: float, rows: list):
        from clipstyle.workflows.creative import GenerateSettings, MixSettings
        from clipstyle.workflows.registry import get_workflow

        a, b = int_or_none(seed_a) or 0, int_or_none(seed_b) or 0
        net = ctx.config.network
        if not rows:
            name, settings = "generate", GenerateSettings(network=net, seeds=str(a))
        else:
            name, settings = "mix", MixSettings(rows=str(a), cols=str(b), network=net,
                                                blocks=",".join(str(int(r)) for r in rows))
        with models.lock:
            return get_workflow(name).run(settings, models=models.cache).image

    with gr.Row():
        with gr.Column():
            mix_a = gr.Number(value=1, precision=0, label="Seed A (the rest)", elem_id="mix-a")
            mix_b = gr.Number(value=2, precision=0, label="Seed B (the chosen rows)", elem_id="mix-b")
            mix_pick = gr.CheckboxGroup(ctx.row_choices, label="Rows from B", elem_id="mix-rows",
                                        value=[i for i, g in enumerate(ctx.groups) if g == "coarse"])
        mix_image = gr.Image(label="B | A and the mix (grid)", type="pil", format="png", elem_id="mix-image")
    gr.on([mix_a.change, mix_b.change, mix_pick.change], guarded(ctx, mix_render), [mix_a, mix_b, mix_pick],
          mix_image, api_name="mix", trigger_mode="always_last", **HEAVY)
