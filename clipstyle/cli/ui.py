"""``clipstyle ui``: serve the web UI (Gradio; ``pip install 'clipstyle[ui]'``).

What a browser may use is fixed here by the operator: the networks (``--network``, repeatable), the folders
whose latents and pictures are offered (``--allow-dir``), the e4e / ArcFace / LPIPS files, the login
(``--auth``/``--auth-file``; serving beyond this machine without one needs ``--no-auth``) and the caps of one
request (``--max-steps`` …). See docs/security.md, "Web UI".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, UserRuntimeError, handle_errors, resolve_device
from clipstyle.cli.text import ClipModelOpt, ClipPretrainedOpt, DeviceOpt

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
FileOpt = Optional[Path]


def read_auth(pairs: list[str], auth_file: Path | None) -> list[tuple[str, str]]:
    """``USER:PASS`` options and the lines of ``auth_file`` (``USER:PASS``; blank and ``#`` lines skipped).

    Raises:
        UsageError: an entry without ``:`` or with an empty user or password; an unreadable file.
    """
    entries = [("--auth", p) for p in pairs]
    if auth_file is not None:
        try:
            text = auth_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--auth-file {auth_file}: cannot read it ({type(exc).__name__})") from None
        entries += [(f"--auth-file line {i}", line.strip()) for i, line in enumerate(text.splitlines(), 1)
                    if line.strip() and not line.strip().startswith("#")]
        if len(entries) == len(pairs):
            raise UsageError(f"--auth-file {auth_file}: no USER:PASS line in it")
    out = []
    for where, entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise UsageError(f"{where}: expected USER:PASS (a user name, a colon, a password)")
        out.append((user.strip(), password))
    return out


def _existing_file(path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file")
    return str(path)


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
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0 exposes the UI to your network: then "
                                           "give --auth, or --no-auth to serve it to anyone).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 7860,
    networks: Annotated[Optional[list[str]], typer.Option(
        "--network", "-n", help="A generator the UI may use (alias, path or URL); repeat it to offer several: the "
                                "first is loaded and drives every tab, the others are Blend's network B. "
                                "Default: ffhq.")] = None,
    allow_dir: Annotated[Optional[list[Path]], typer.Option(
        help="A folder whose latent files and pictures the UI lists by name (keyframes, photos, image prompts); "
             "repeatable. Nothing else on this machine can be named from a browser.")] = None,
    encoder: Annotated[FileOpt, typer.Option(help="e4e checkpoint for the Photo tab's Encode and e4e start.")] = None,
    id_weights: Annotated[FileOpt, typer.Option(help="ArcFace IR-SE50 weights for the Photo tab's identity "
                                                     "loss.")] = None,
    lpips_weights: Annotated[FileOpt, typer.Option(help="LPIPS weights (file or folder) for perceptual "
                                                        "projection; default: the one-time download.")] = None,
    clip_model: ClipModelOpt = "ViT-B-32",
    clip_pretrained: ClipPretrainedOpt = "openai",
    device: DeviceOpt = "auto",
    outdir: Annotated[Path, typer.Option(help="Folder where every run folder of the UI is recorded.")] = Path("out/ui"),
    auth: Annotated[Optional[list[str]], typer.Option(help="USER:PASS a browser must log in with; "
                                                           "repeatable.")] = None,
    auth_file: Annotated[FileOpt, typer.Option(help="File of USER:PASS lines (keeps passwords out of the "
                                                    "process list).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve beyond this machine without a login "
                                                            "(anyone who can reach the port may use it).")] = False,
    max_steps: Annotated[int, typer.Option(help="Most optimization steps of one request.", min=1)] = 500,
    max_frames: Annotated[int, typer.Option(help="Most frames of one interpolation.", min=1)] = 240,
    max_batch: Annotated[int, typer.Option(help="Most images optimized together in one request.", min=1)] = 4,
    max_resolution: Annotated[int, typer.Option(help="Longest side (pixels) of an uploaded picture.",
                                                min=64)] = 2048,
    max_seconds: Annotated[float, typer.Option(help="Seconds one request may run; then it stops keeping its "
                                                    "best result.", min=1)] = 300.0,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload, MiB.", min=0.01)] = 50.0,
) -> None:
    """Open the interactive web UI: text → image with live preview and Stop, photo align/encode/project/edit,
    styleblocks, mixing, blending and interpolation, on one loaded network. Several browser tabs queue."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError("the UI needs Gradio: pip install 'clipstyle[ui]'") from None
    from clipstyle.ui.config import Limits, UIConfig

    logins = read_auth(list(auth or []), auth_file)
    if host.strip().lower() not in LOCAL_HOSTS and not host.startswith("127.") and not logins and not no_auth:
        raise UsageError(f"--host {host} serves the UI beyond this machine: give --auth USER:PASS or --auth-file, "
                         "or --no-auth to let anyone who reaches the port use it")
    if logins and no_auth:
        raise UsageError("--no-auth contradicts --auth/--auth-file")
    check_serving_address(host, port)  # a busy port or a foreign address: one line before the network loads
    limits = Limits(max_steps=max_steps, max_frames=max_frames, max_batch=max_batch, max_resolution=max_resolution,
                    max_seconds=max_seconds, max_upload_mb=max_upload_mb,
                    max_session_mb=max(4 * max_upload_mb, 200.0))
    from clipstyle.cli.checks import check_network

    for name in networks or []:
        check_network(name)
    config = UIConfig(networks=tuple(networks or ["ffhq"]), clip_model=clip_model, clip_pretrained=clip_pretrained,
                      device=resolve_device(device), outdir=str(outdir),
                      allow_dirs=tuple(str(d) for d in allow_dir or []),
                      encoder=_existing_file(encoder, "--encoder"), id_weights=_existing_file(id_weights, "--id-weights"),
                      lpips_weights=str(lpips_weights) if lpips_weights is not None else None, limits=limits)
    for folder in config.allow_dirs:
        if not Path(folder).is_dir():
            raise UsageError(f"--allow-dir {folder}: not a folder")
    from clipstyle.ui.app import launch

    typer.echo(f"clipstyle UI on http://{host}:{port}{' (login required)' if logins else ''} (Ctrl-C stops it)",
               err=True)
    launch(config, host, port, auth=logins or None)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
