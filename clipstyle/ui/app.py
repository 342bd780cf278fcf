"""``clipstyle ui``: the Gradio app, assembled from one module per tab (:mod:`clipstyle.ui.tabs`).

Tabs: Text, Photo, Styleblocks, Mix, Blend, Interpolate, and the tabs of :data:`EXTRA_TABS` where their modules
exist. Every tab calls a public pipeline with the process's loaded models (:class:`~clipstyle.ui.runner.Models`);
files come only from the operator's allowed lists and this session's uploads (:mod:`clipstyle.ui.sources`);
every request is capped (:class:`~clipstyle.ui.config.Limits`), stoppable, and fails as one line
(:mod:`clipstyle.ui.errors`). Heavy events share one Gradio concurrency group (``model``, limit 1) and the
model lock, so several browser tabs queue; light routes (the page, ``/config``, Stop) keep answering.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import gradio as gr

from clipstyle.ui.config import UIConfig
from clipstyle.ui.runner import Models
from clipstyle.ui.sources import AllowedFiles, Sessions
from clipstyle.ui.tabs import blend, interpolate, mix, photo, styleblocks, text
from clipstyle.ui.tabs.common import Context, ui_error

__all__ = ["CSS", "EXTRA_TABS", "build_app", "launch", "ui_error"]

CSS = (".cs-status progress { width: 60%; height: 1.1em; vertical-align: middle; }\n"
       # small networks (the 64² test fixture) are shown scaled up, pixels kept sharp
       ".cs-big img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }")

#: Tabs written elsewhere, mounted when their module exists: (title, module names tried in order). Each module
#: exposes ``build_tab(models)`` (called inside ``gr.Tab``); ``models.ui`` is the app's
#: :class:`~clipstyle.ui.tabs.common.Context` (caps, Stop flags, uploads, the error line).
EXTRA_TABS = (("Global edit", ("clipstyle.ui.tabs.global_edit", "clipstyle.ui.global_edit")),
              ("Adapt", ("clipstyle.ui.tabs.adapt", "clipstyle.ui.adapt")))


def _extra_module(names: tuple[str, ...]) -> Any:
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if found:
            return importlib.import_module(name)
    return None


def build_app(config: UIConfig, models: Models | None = None, sessions: Sessions | None = None) -> Any:
    """The Gradio ``Blocks`` of the UI (not launched). Loads the generator now unless ``models`` is given.

    Raises:
        UsageError: an ``--allow-dir`` that is not a folder. FileNotFoundError / CheckpointError / DeviceError:
        the network or device of ``config``.
    """
    allowed = AllowedFiles.scan(config.allow_dirs)
    models = models or Models(config)
    lim = config.limits
    ctx = Context(config, models, allowed, sessions or Sessions(lim.upload_bytes, lim.session_bytes))
    models.ui = ctx
    for named, load in ((config.encoder, "encoder"), (config.id_weights, "identity")):
        if named is not None:
            getattr(models, load)  # a wrong file fails now, as one line, not in a browser later
    G = models.G
    with gr.Blocks(title="clipstyle", delete_cache=(600, 3600)) as demo:
        source = str(G.describe().get("source") or config.network)
        gr.Markdown(f"## clipstyle\nNetwork **{Path(source).name}** ({G.img_resolution}², {G.num_ws} styleblocks) "
                    f"on {models.device} · at most {lim.max_steps} steps, {lim.max_frames} frames, "
                    f"{lim.max_seconds:g} s a request")
        with gr.Tab("Text"):
            text.build(ctx)
        with gr.Tab("Photo"):
            photo.build(ctx)
        with gr.Tab("Styleblocks"):
            styleblocks.build(ctx, demo)
        with gr.Tab("Mix"):
            mix.build(ctx)
        with gr.Tab("Blend"):
            blend.build(ctx)
        with gr.Tab("Interpolate"):
            interpolate.build(ctx)
        for title, names in EXTRA_TABS:
            module = _extra_module(names)
            if module is not None:
                with gr.Tab(getattr(module, "TITLE", title)):
                    module.build_tab(models)

        def end_session(request: gr.Request) -> None:
            session = ctx.session(request)
            ctx.stops.forget(session)
            ctx.sessions.close(session)

        demo.unload(end_session)
    demo.queue(default_concurrency_limit=1, max_size=lim.max_queue)
    demo.clipstyle = ctx
    return demo


def launch(config: UIConfig, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True,
           auth: list[tuple[str, str]] | None = None) -> Any:
    """Build and serve the UI on ``host:port`` (one process, one generator); returns the Blocks.

    ``auth``: (user, password) pairs a browser must log in with (Gradio's login page); None: no login.
    With ``block=False`` the server runs in the background (tests) and the Blocks is returned at once.
    Nothing outside Gradio's own cache is served (no ``allowed_paths``); uploads are capped by
    ``max_file_size`` at the upload route.
    """
    demo = build_app(config)
    Path(config.outdir).mkdir(parents=True, exist_ok=True)
    try:
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
                    css=CSS, footer_links=["api"], auth=auth or None, max_file_size=config.limits.upload_bytes,
                    share=False, show_error=True, ssr_mode=False)
    finally:
        if block:
            demo.clipstyle.sessions.remove_all()
    return demo
