"""The Interpolate tab: keyframes (seeds, and latent files uploaded in this session or listed from the
operator's allowed folders, by name) → ``interpolation.gif`` (the registry's ``interpolate`` workflow).
Endpoint ``/interpolate`` (keyframes, frames per segment, mode, loop[, uploads]); stoppable."""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

from clipstyle.errors import UsageError
from clipstyle.ui.runner import stream
from clipstyle.ui.sources import LATENT_SUFFIXES
from clipstyle.ui.tabs.common import HEAVY, Context, guarded

__all__ = ["build", "keyframes"]

_SEEDS = re.compile(r"^(\d+)(?:-(\d+))?(@[0-9.eE+-]+)?$")
MAX_KEYS = 64


def keyframes(text: str, names: dict[str, str], G: Any) -> tuple[list[str], int]:
    """Keyframe tokens (``1, 2-4, face.npz, face.npz#1``) → the sources for the pipeline and how many
    keyframes they make. Files are read here with the budgeted latent reader (outside the model lock).

    Raises:
        UsageError: a token that is neither seeds nor a listed file name; too many keyframes.
        LatentFileError: a listed file that is not a latent of this network.
    """
    from clipstyle.latents import load_latents

    sources, count = [], 0
    for token in [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]:
        m = _SEEDS.match(token)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            count += max(1, hi - lo + 1)
            sources.append(token)
        else:
            name, _, index = token.rpartition("#") if re.search(r"#\d+$", token) else (token, "", "")
            if name not in names:
                shown = name if len(name) <= 60 else name[:59] + "…"
                raise UsageError(f"keyframe {shown!r} is neither seeds nor a latent file this session can use "
                                 f"(upload it, or pick one of the server's: {', '.join(sorted(names)[:5]) or 'none'})")
            n = load_latents(names[name], num_ws=G.num_ws, w_dim=G.w_dim).ws.shape[0]
            count += 1 if index else n
            sources.append(names[name] + (f"#{index}" if index else ""))
        if count > MAX_KEYS:
            raise UsageError(f"more than {MAX_KEYS} keyframes")
    return sources, count


def build(ctx: Context) -> None:
    """Lay out the Interpolate tab."""
    config, models, lim = ctx.config, ctx.models, ctx.limits

    def interpolate_run(text: str, frames: float, mode: str, loop: bool, uploads: Any, request: gr.Request):
        from clipstyle.latents.interpolate import frame_count
        from clipstyle.workflows.creative import InterpolateSettings
        from clipstyle.workflows.registry import get_workflow

        job = ctx.job(request)
        for upload in uploads or []:
            ctx.take_upload(request, upload, LATENT_SUFFIXES)
        sources, count = keyframes(text, ctx.latent_names(request), models.G)
        per = ctx.cap(frames, lim.max_frames, "--max-frames", "frames per segment")
        total = frame_count(count, per, bool(loop))
        if total > lim.max_frames:
            raise UsageError(f"{count} keyframes × {per} frames make {total} frames, over this server's limit "
                             f"of {lim.max_frames} (--max-frames)")

        settings = InterpolateSettings(sources=tuple(sources), frames=per, mode=mode, loop=bool(loop),
                                       network=config.network)

        def work(report):
            return get_workflow("interpolate").run(settings, models=models.cache, stop=job.stopped,
                                                   callback=lambda done, all_: report(done, all_))

        for kind, payload in stream(work, models.lock, job):
            if kind == "progress":
                done, all_ = payload
                yield gr.skip(), ctx.status(done, all_, f"frame {done}/{all_}", "interpolate"), gr.skip()
            else:
                run_dir, files = ctx.publish(payload, request, ("interpolation.gif", "latents.npz"))
                made = payload.settings["total_frames"]
                text = f"{made} frames → {run_dir.name}" if not payload.interrupted else \
                    f"stopped by {job.why()} after {made} frames → {run_dir.name}"
                yield files[0], ctx.status(made, made, text, "interpolate"), files

    def stop(request: gr.Request) -> None:
        ctx.stops.stop(ctx.session(request))

    with gr.Row():
        with gr.Column():
            ip_src = gr.Textbox(value="1,2,3", label="Keyframes: seeds (1, 2-4) and latent files by name",
                                elem_id="ip-keys")
            ip_files = gr.File(label="Upload latent files (.npz .npy .pt), then name them above",
                               file_count="multiple", file_types=list(LATENT_SUFFIXES), type="filepath",
                               elem_id="ip-upload")
            if ctx.allowed.latents:
                gr.Markdown("Latent files on the server: " + ", ".join(f"`{n}`" for n in sorted(ctx.allowed.latents)))
            ip_frames = gr.Slider(2, min(120, lim.max_frames), value=min(12, lim.max_frames), step=1,
                                  label="Frames per segment", elem_id="ip-frames")
            ip_mode = gr.Radio(["lerp", "slerp"], value="lerp", label="Mode")
            ip_loop = gr.Checkbox(label="Loop back to the first keyframe")
            with gr.Row():
                ip_go = gr.Button("Interpolate", variant="primary", elem_id="ip-go")
                ip_stop = gr.Button("Stop", variant="stop", elem_id="ip-stop")
        with gr.Column():
            ip_status = gr.HTML(ctx.status(0, 1, "idle", "interpolate"), elem_id="ip-status")
            ip_gif = gr.Image(label="interpolation.gif", type="filepath", elem_id="ip-gif")
            ip_out = gr.File(file_count="multiple", elem_id="ip-files")
    ip_go.click(guarded(ctx, interpolate_run), [ip_src, ip_frames, ip_mode, ip_loop, ip_files],
                [ip_gif, ip_status, ip_out], api_name="interpolate", show_progress="hidden", **HEAVY)
    ip_stop.click(stop, None, None, queue=False, api_visibility="private")
