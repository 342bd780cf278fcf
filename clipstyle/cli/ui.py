"""``clipstyle ui``: serve the web UI (Gradio; ``pip install 'clipstyle[ui]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipstyle.cli.common import UsageError, UserRuntimeError, handle_errors, resolve_device
from clipstyle.cli.text import ClipModelOpt, ClipPretrainedOpt, DeviceOpt, NetworkOpt


def check_serving_address(host: str, port: int) -> None:
    """``host:port`` can be served on: bind a socket there and close it at once (nothing is served).

    Raises:
        UsageError: ``host`` is no name or address of this machine (exit 2).
        UserRuntimeError: the port is taken by another program, or needs privileges (exit 1).
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else "not a host name"
        raise UsageError(f"--host {host!r} cannot be resolved ({reason}); use an address of this machine, "
                         "e.g. 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserRuntimeError(f"port {port} on {host} is in use by another program; choose another "
                                       "--port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"--host {host} is not an address of this machine; use 127.0.0.1 (this "
                                 "machine only) or 0.0.0.0 (every network)") from None
            if exc.errno == errno.EACCES:
                raise UserRuntimeError(f"port {port} needs administrator rights; choose a port above 1023") from None
            raise UserRuntimeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


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
    check_serving_address(host, port)  # a busy port or a foreign address: one line before the network loads
    from clipstyle.ui.app import launch
    from clipstyle.ui.runner import UIConfig

    config = UIConfig(network=network, clip_model=clip_model, clip_pretrained=clip_pretrained,
                      device=resolve_device(device), outdir=str(outdir))
    typer.echo(f"clipstyle UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    launch(config, host, port)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
