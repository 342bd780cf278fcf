"""``clipstyle ui``: a Gradio app over the pipelines (tabs Text, Photo, Styleblocks, Mix, Blend, Interpolate).

Every tab calls a public pipeline with the process's loaded models (:class:`~clipstyle.ui.runner.Models`):
Text → :func:`~clipstyle.pipelines.text.text_to_image`, Styleblocks → :func:`~clipstyle.latents.styleblocks.scale_rows`,
Mix → :func:`~clipstyle.pipelines.creative.mix_grid`, Blend → :func:`~clipstyle.pipelines.creative.blend`,
Interpolate → :func:`~clipstyle.pipelines.creative.interpolate`, Photo → ``clipstyle.pipelines.photo`` (when
installed). Long actions stream a preview and a ``<progress>`` bar and stop on Stop, keeping the best so far.
Heavy events share one Gradio concurrency group (``model``, limit 1) and the model lock, so several browser tabs
queue. Named API endpoints (for ``gradio_client``): ``/text_to_image`` (prompt, steps) → image,
``/text_generate`` (the Text tab: prompt, steps, seed, blocks, mix seed, mix rows, recipe), ``/stop``, ``/styleblocks``, ``/mix``, ``/blend``, ``/interpolate``.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

import gradio as gr

from clipstyle.ui.runner import Models, StopFlags, UIConfig, preview, status_html, stream

__all__ = ["build_app", "launch", "ui_error"]

CSS = (".cs-status progress { width: 60%; height: 1.1em; vertical-align: middle; }\n"
       # small networks (the 64² test fixture) are shown scaled up, pixels kept sharp
       ".cs-big img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }")


def ui_error(exc: BaseException) -> Exception:
    """The ``gr.Error`` shown for ``exc``: :func:`clipstyle.errors.error_line`, the line the CLI and a batch job
    show for the same exception (a bug says it is one, and its traceback goes to the server's stderr)."""
    if isinstance(exc, gr.Error):
        return exc
    from clipstyle.errors import describe, error_line

    if describe(exc) is None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return gr.Error(error_line(exc))


def _session(request: Any) -> str:
    return str(getattr(request, "session_hash", None) or "default")


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" or float(value) < 0 else int(value)


def _files(run_dir: Path) -> list[str]:
    return [str(run_dir / n) for n in ("result.png", "progress.gif", "latents.npz") if (run_dir / n).is_file()]


def build_app(config: UIConfig, models: Models | None = None) -> Any:
    """The Gradio ``Blocks`` of the UI (not launched). Loads the generator now unless ``models`` is given.

    Raises:
        FileNotFoundError / CheckpointError / DeviceError: the network or device of ``config``.
    """
    models = models or Models(config)
    G = models.G
    stops = StopFlags()
    outdir = Path(config.outdir)
    groups = list(G.block_groups())
    row_labels = [f"{i} {groups[i]}" if i < len(groups) else str(i) for i in range(G.num_ws)]
    row_choices = [(label, i) for i, label in enumerate(row_labels)]  # shown: "3 middle", sent: 3
    from clipstyle.guidance.recipes import list_recipes

    recipes = list_recipes()

    # ------------------------------------------------------------------------------------------ Text
    def text_generate(prompt: str, steps: float, seed: float, blocks: list, mix_seed: float, mix_rows: list,
                      recipe: str | None, request: gr.Request):
        from clipstyle.pipelines.text import text_to_image

        flag = stops.new(_session(request))
        n = int(steps)
        mix = [f"{int(mix_seed)}:{','.join(str(int(r)) for r in mix_rows)}"] \
            if mix_rows and _int_or_none(mix_seed) is not None else []
        every = max(1, int(config.preview_every))

        def job(report):
            def callback(info, images):
                if info.step % every == 0 or info.step + 1 == info.steps:
                    report(info, preview(images))

            return text_to_image(prompt, network=config.network, clip_model=config.clip_model,
                                 clip_pretrained=config.clip_pretrained, steps=n, seed=_int_or_none(seed),
                                 blocks=",".join(str(int(r)) for r in blocks) if blocks else None, mix=mix,
                                 recipe=recipe or None,
                                 save_every=max(1, n // 40), callback=callback, stop=flag.is_set,
                                 G=models.G, guide=models.guide)

        try:
            for kind, payload in stream(job, models.lock, flag):
                if kind == "progress":
                    info, img = payload
                    text = f"step {info.step + 1}/{info.steps} · loss {info.loss:.4f}"
                    yield img, status_html(info.step + 1, info.steps, text), gr.skip(), gr.skip()
                else:
                    run = payload
                    run_dir = run.save(outdir)
                    r = run.result
                    text = (f"stopped after {r.steps_done} steps; kept the best (loss {r.best_loss:.4f} at step "
                            f"{r.best_step + 1})" if run.interrupted else
                            f"done: {r.steps_done} steps, best loss {r.best_loss:.4f} → {run_dir.name}")
                    yield run.image, status_html(r.steps_done, n, text), run.image, _files(run_dir)
        except Exception as exc:  # noqa: BLE001 - classified by type in ui_error
            raise ui_error(exc) from None

    def stop(request: gr.Request) -> None:
        stops.stop(_session(request))  # the running job ends after its current step, keeping the best

    def api_text_to_image(prompt: str, steps: float):
        from clipstyle.pipelines.text import text_to_image

        try:
            with models.lock:
                return text_to_image(prompt, network=config.network, clip_model=config.clip_model,
                                     clip_pretrained=config.clip_pretrained, steps=int(steps),
                                     G=models.G, guide=models.guide).image
        except Exception as exc:  # noqa: BLE001 - classified by type in ui_error
            raise ui_error(exc) from None

    # ----------------------------------------------------------------------------------- Styleblocks
    def styleblocks_render(seed: float, around: str, *factors: float):
        import torch

        from clipstyle.latents import start_ws
        from clipstyle.latents.styleblocks import render_ws, scale_rows

        try:
            with models.lock:
                ws, _ = start_ws(models.G, seed=_int_or_none(seed))
                center = models.G.w_avg.detach().to(torch.float32) if around == "avg" else None
                return render_ws(models.G, scale_rows(ws, [float(f) for f in factors], center))[0]
        except Exception as exc:  # noqa: BLE001 - classified by type in ui_error
            raise ui_error(exc) from None

    # ------------------------------------------------------------------------------------------- Mix
    def mix_render(seed_a: float, seed_b: float, rows: list):
        from clipstyle.pipelines.creative import generate, mix_grid

        a, b = _int_or_none(seed_a) or 0, _int_or_none(seed_b) or 0
        try:
            with models.lock:
                if not rows:
                    return generate(seeds=str(a), G=models.G).image
                return mix_grid(rows=str(a), cols=str(b), blocks=",".join(str(int(r)) for r in rows),
                                G=models.G).image
        except Exception as exc:  # noqa: BLE001 - classified by type in ui_error
            raise ui_error(exc) from None

    # ----------------------------------------------------------------------------------------- Blend
    def blend_render(network_b: str, at: str, smooth: float, seed: float):
        from clipstyle.pipelines.creative import blend, generate
        from clipstyle.render.files import side_by_side

        if not str(network_b).strip():
            raise gr.Error("give the second network B (an alias, a checkpoint path or a URL)")
        s = str(_int_or_none(seed) or 0)
        try:
            with models.lock:
                G_b = models.network(network_b.strip())
                blended = blend(config.network, network_b, at=int(at), smooth=float(smooth) or None,
                                device=models.device, G_a=models.G, G_b=G_b)
                return side_by_side(generate(seeds=s, G=models.G).images[0], generate(seeds=s, G=blended).images[0])
        except Exception as exc:  # noqa: BLE001 - classified by type in ui_error
            raise ui_error(exc) from None

    # ----------------------------------------------------------------------------------- Interpolate
    def interpolate_run(sources: str, frames: float, mode: str, loop: bool, request: gr.Request):
        from clipstyle.pipelines.creative import interpolate

        flag = stops.new(_session(request))
        keys = [s for s in str(sources).replace(" ", ",").split(",") if s.strip()]

        def job(report):
            return interpolate(keys, frames=int(frames), mode=mode, loop=bool(loop), G=models.G,
                               callback=lambda done, total: report(done, total), stop=flag.is_set)

        try:
            for kind, payload in stream(job, models.lock, flag):
                if kind == "progress":
                    done, total = payload
                    yield gr.skip(), status_html(done, total, f"frame {done}/{total}", "interpolate"), gr.skip()
                else:
                    run_dir = payload.save(outdir)
                    total = payload.settings["total_frames"]
                    done_text = f"{total} frames → {run_dir.name}"
                    yield (str(run_dir / "interpolation.gif"), status_html(total, total, done_text, "interpolate"),
                           [str(run_dir / "interpolation.gif"), str(run_dir / "latents.npz")])
        except Exception as exc:  # noqa: BLE001 - classified by type in ui_error
            raise ui_error(exc) from None

    # ----------------------------------------------------------------------------------------- Photo
    try:
        photo = importlib.util.find_spec("clipstyle.pipelines.photo") is not None
    except (ImportError, ValueError):
        photo = False

    def photo_run(action: str, image_path: str, prompt: str, steps: float, space: str, request: gr.Request):
        if not image_path:
            raise gr.Error("upload a photo first")
        flag = stops.new(_session(request))
        from clipstyle.workflows.registry import get_workflow

        fn = get_workflow(action).function()
        every = max(1, int(config.preview_every))

        def job(report):
            def callback(info, images):
                if info.step % every == 0 or info.step + 1 == info.steps:
                    report(info, preview(images))

            kwargs: dict[str, Any] = {"G": models.G, "device": models.device, "callback": callback,
                                      "stop": flag.is_set, "steps": int(steps)}
            if action == "project":
                return fn(image_path, space=space, **kwargs)
            return fn(image_path, prompt, guide=models.guide, clip_model=config.clip_model,
                      clip_pretrained=config.clip_pretrained, project_space=space, **kwargs)

        try:
            for kind, payload in stream(job, models.lock, flag):
                if kind == "progress":
                    info, img = payload
                    text = f"step {info.step + 1}/{info.steps} · loss {info.loss:.4f}"
                    yield img, status_html(info.step + 1, info.steps, text, "photo"), gr.skip()
                elif hasattr(payload, "save"):  # a Run
                    run_dir = payload.save(outdir)
                    yield payload.image, status_html(1, 1, f"{action}: done → {run_dir.name}", "photo"), _files(run_dir)
                else:  # align returns the aligned image itself
                    yield payload, status_html(1, 1, f"{action}: done", "photo"), gr.skip()
        except Exception as exc:  # noqa: BLE001 - classified by type in ui_error
            raise ui_error(exc) from None

    # ---------------------------------------------------------------------------------------- layout
    heavy = {"concurrency_limit": 1, "concurrency_id": "model"}
    with gr.Blocks(title="clipstyle") as demo:
        source = str(G.describe().get("source") or config.network)
        gr.Markdown(f"## clipstyle\nNetwork **{Path(source).name if Path(source).exists() else source}** "
                    f"({G.img_resolution}², {G.num_ws} styleblocks) on {models.device}")
        with gr.Tab("Text"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt", elem_id="text-prompt",
                                        placeholder="a smiling child | blond hair:0.5 | glasses:-1")
                    steps = gr.Slider(1, 1000, value=100, step=1, label="Steps", elem_id="text-steps")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1: start at w_avg)", elem_id="text-seed")
                    blocks = gr.CheckboxGroup(row_choices, label="Styleblocks to optimize (none: all)")
                    with gr.Row():
                        mix_seed = gr.Number(value=-1, precision=0, label="Mixing source seed")
                        mix_rows = gr.CheckboxGroup(row_choices, label="Rows fixed to the source")
                    recipe = gr.Dropdown([("none", "")] + [(f"{r.name}: {r.description}", r.name) for r in recipes],
                                         value="", label="Recipe (a curated edit: its directional loss and blocks)")
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="text-generate")
                        halt = gr.Button("Stop", variant="stop", elem_id="text-stop")
                with gr.Column():
                    status = gr.HTML(status_html(0, 1, "idle"), elem_id="text-status")
                    live = gr.Image(label="Preview", type="numpy", elem_id="text-preview", format="png", height=280,
                                    elem_classes="cs-big")
                    result = gr.Image(label="Result", type="pil", elem_id="text-result", format="png", height=280,
                                      elem_classes="cs-big")
                    files = gr.File(label="result.png, progress.gif, latents.npz", file_count="multiple",
                                    elem_id="text-files")
            go.click(text_generate, [prompt, steps, seed, blocks, mix_seed, mix_rows, recipe],
                     [live, status, result, files],
                     api_name="text_generate", show_progress="hidden", **heavy)
            halt.click(stop, None, None, api_name="stop", queue=False)
            api_prompt = gr.Textbox(visible=False)
            api_steps = gr.Number(value=10, visible=False)
            api_image = gr.Image(type="pil", visible=False, format="png")
            gr.Button(visible=False).click(api_text_to_image, [api_prompt, api_steps], api_image,
                                           api_name="text_to_image", **heavy)
        with gr.Tab("Photo"):
            if photo:
                with gr.Row():
                    with gr.Column():
                        photo_in = gr.Image(type="filepath", label="Photo (before)")
                        photo_prompt = gr.Textbox(label="Edit prompt")
                        photo_steps = gr.Slider(1, 1000, value=200, step=1, label="Steps")
                        photo_space = gr.Radio(["w", "w+"], value="w+", label="Latent space")
                        with gr.Row():
                            extra = [a for a in ("align", "encode") if hasattr(_photo_module(), a)]
                            extra_btns = {a: gr.Button(a.capitalize()) for a in extra}
                            proj_btn = gr.Button("Project", variant="primary")
                            edit_btn = gr.Button("Edit", variant="primary")
                            photo_stop = gr.Button("Stop", variant="stop")
                    with gr.Column():
                        photo_status = gr.HTML(status_html(0, 1, "idle", "photo"))
                        photo_out = gr.Image(label="After", type="pil", format="png")
                        photo_files = gr.File(file_count="multiple")
                ins = [photo_in, photo_prompt, photo_steps, photo_space]
                outs = [photo_out, photo_status, photo_files]
                proj_btn.click(_bind(photo_run, "project"), ins, outs, api_name="project", **heavy)
                edit_btn.click(_bind(photo_run, "edit"), ins, outs, api_name="edit", **heavy)
                for action, btn in extra_btns.items():
                    btn.click(_bind(photo_run, action), ins, outs, api_name=action, **heavy)
                photo_stop.click(stop, None, None, queue=False, api_visibility="private")
            else:
                gr.Markdown("Photo projection and editing are **not available** in this installation "
                            "(the module `clipstyle.pipelines.photo` is missing).", elem_id="photo-unavailable")
        with gr.Tab("Styleblocks"):
            with gr.Row():
                with gr.Column():
                    sb_seed = gr.Number(value=0, precision=0, label="Seed")
                    sb_around = gr.Radio(["zero", "avg"], value="zero", label="Scale about 0 or w_avg")
                    sliders = [gr.Slider(-2, 3, value=1, step=0.05, label=f"row {lab}") for lab in row_labels]
                sb_image = gr.Image(label="Rendered", type="numpy", format="png", elem_id="sb-image")
            sb_inputs = [sb_seed, sb_around, *sliders]
            gr.on([sb_seed.change, sb_around.change, *[s.release for s in sliders]], styleblocks_render, sb_inputs,
                  sb_image, api_name="styleblocks", trigger_mode="always_last", **heavy)
            demo.load(styleblocks_render, sb_inputs, sb_image, api_visibility="private", **heavy)
        with gr.Tab("Mix"):
            with gr.Row():
                with gr.Column():
                    mix_a = gr.Number(value=1, precision=0, label="Seed A (the rest)")
                    mix_b = gr.Number(value=2, precision=0, label="Seed B (the chosen rows)")
                    mix_pick = gr.CheckboxGroup(row_choices, label="Rows from B",
                                                value=[i for i, g in enumerate(groups) if g == "coarse"])
                mix_image = gr.Image(label="B | A and the mix (grid)", type="pil", format="png")
            gr.on([mix_a.change, mix_b.change, mix_pick.change], mix_render, [mix_a, mix_b, mix_pick], mix_image,
                  api_name="mix", trigger_mode="always_last", **heavy)
        with gr.Tab("Blend"):
            with gr.Row():
                with gr.Column():
                    bl_net = gr.Textbox(label="Network B (higher resolutions)", placeholder="alias, path or URL")
                    res = [str(2**k) for k in range(2, int(G.img_resolution).bit_length())]
                    bl_at = gr.Dropdown(res, value=res[len(res) // 2], label="Cut resolution (≤ from A)")
                    bl_smooth = gr.Slider(0, 3, value=0, step=0.25, label="Smooth switch (octaves)")
                    bl_seed = gr.Number(value=0, precision=0, label="Seed")
                    bl_go = gr.Button("Blend", variant="primary")
                bl_image = gr.Image(label="A | blended", type="numpy", format="png")
            bl_go.click(blend_render, [bl_net, bl_at, bl_smooth, bl_seed], bl_image, api_name="blend", **heavy)
        with gr.Tab("Interpolate"):
            with gr.Row():
                with gr.Column():
                    ip_src = gr.Textbox(value="1,2,3", label="Keyframes (seeds or latent .npz paths)")
                    ip_frames = gr.Slider(2, 120, value=12, step=1, label="Frames per segment")
                    ip_mode = gr.Radio(["lerp", "slerp"], value="lerp", label="Mode")
                    ip_loop = gr.Checkbox(label="Loop back to the first keyframe")
                    with gr.Row():
                        ip_go = gr.Button("Interpolate", variant="primary")
                        ip_stop = gr.Button("Stop", variant="stop")
                with gr.Column():
                    ip_status = gr.HTML(status_html(0, 1, "idle", "interpolate"))
                    ip_gif = gr.Image(label="interpolation.gif", type="filepath")
                    ip_files = gr.File(file_count="multiple")
            ip_go.click(interpolate_run, [ip_src, ip_frames, ip_mode, ip_loop], [ip_gif, ip_status, ip_files],
                        api_name="interpolate", show_progress="hidden", **heavy)
            ip_stop.click(stop, None, None, queue=False, api_visibility="private")
    demo.queue(default_concurrency_limit=1)
    return demo


def _photo_module() -> Any:
    import clipstyle.pipelines.photo as photo_pipelines

    return photo_pipelines


def _bind(fn: Any, action: str) -> Any:
    """``fn`` with its first argument fixed, keeping the ``gr.Request`` parameter Gradio injects."""

    def bound(image_path: str, prompt: str, steps: float, space: str, request: gr.Request):
        yield from fn(action, image_path, prompt, steps, space, request)

    return bound


def launch(config: UIConfig, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True) -> Any:
    """Build and serve the UI on ``host:port`` (one process, one generator); returns the Blocks.

    With ``block=False`` the server runs in the background (tests) and the Blocks is returned at once.
    """
    demo = build_app(config)
    Path(config.outdir).mkdir(parents=True, exist_ok=True)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
                allowed_paths=[str(Path(config.outdir).resolve())], css=CSS, footer_links=["api"])
    return demo
