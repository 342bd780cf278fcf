"""``clipstyle ui``: serve the web UI (Gradio; ``pip install 'clipstyle[ui]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipstyle.cli.common import UsageError, handle_errors, resolve_device
from clipstyle.cli.text import ClipModelOpt, ClipPretrainedOpt, DeviceOpt, NetworkOpt


@handle_errors
def ui_command(
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0 exposes the UI to your network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 7860,
    network: NetworkOpt = "ffhq",
    clip_model: ClipModelOpt = "ViT-B-32",
    clip_pretrained: ClipPretrainedOpt = "openai",
    device: DeviceOpt = "auto",
    outdir: Annotated[Path, typer.Option(help="Folder for the run folders the UI offers for download.")] = Path("out/ui"),
) -> None:
    """Open the interactive web UI: text → image with live preview and Stop, photo editing, styleblocks, mixing,
    blending and interpolation, on one loaded network. Several browser tabs queue for the one generator."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError("the UI needs Gradio: pip install 'clipstyle[ui]'") from None
    from clipstyle.ui.app import launch
    from clipstyle.ui.runner import UIConfig

    config = UIConfig(network=network, clip_model=clip_model, clip_pretrained=clip_pretrained,
                      device=resolve_device(device), outdir=str(outdir))
    typer.echo(f"clipstyle UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    launch(config, host, port)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
