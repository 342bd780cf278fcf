"""Commands about networks: ``info``, ``networks``, ``convert``, ``generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipstyle.cli.common import UsageError, handle_errors


@handle_errors
def info_command(network: Annotated[str, typer.Argument(help="Alias, checkpoint path or URL.")],
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Show a network's architecture, sizes and the resolution/group of every styleblock row."""
    import json

    from rich.console import Console
    from rich.table import Table

    from clipstyle.generator import load_generator

    G = load_generator(network)
    d = G.describe()
    rows = [{"row": i, "resolution": r, "group": g} for i, (r, g) in enumerate(zip(G.block_resolutions(), G.block_groups()))]
    if as_json:
        typer.echo(json.dumps({**d, "styleblocks": rows}, indent=2))
        return
    console = Console()
    console.print(f"[bold]{d['kind']}[/bold] {d['img_resolution']}×{d['img_resolution']}×{d['img_channels']}  "
                  f"z_dim={d['z_dim']} w_dim={d['w_dim']} c_dim={d['c_dim']} num_ws={d['num_ws']}  "
                  f"params={d['num_params']:,}")
    console.print(f"format: {d['format']}   source: {d['source']}   file: {d['path']}")
    arch = getattr(G.config, "architecture", None)
    if arch:
        console.print(f"architecture: {arch}")
    if "w_avg_origin" in d:  # StyleGAN1: what the file held and what we made up
        console.print(f"w_avg: {d['w_avg_origin']}")
        console.print(f"noise (noise_mode const): {d['noise_origin']}")
        console.print(f"instance-norm eps: {d['instance_norm_eps']:g}   fused up-sampling at: "
                      f"{', '.join(f'{r}²' for r in d['fused_upsampling']) or 'none'}")
        dt = d["default_truncation"]
        console.print(f"default truncation (StyleGAN1's, used by 'generate' unless --truncation is given): "
                      f"psi {dt['psi']} on rows 0-{dt['cutoff'] - 1}")
    table = Table("row", "resolution", "group")
    for r in rows:
        table.add_row(str(r["row"]), f"{r['resolution']}²", r["group"])
    console.print(table)


@handle_errors
def networks_command(
    urls: Annotated[bool, typer.Option("--urls", help="Print 'ALIAS URL' lines instead of the table (whole URLs, "
                                       "one per line, for scripts and wget).")] = False,
) -> None:
    """List the pretrained aliases; each downloads once, into the cache, from the URL that --urls prints."""
    from rich.console import Console
    from rich.table import Table

    from clipstyle.generator.registry import PRETRAINED

    if urls:
        for p in PRETRAINED.values():
            typer.echo(f"{p.alias} {p.url}")
        return
    table = Table("alias", "family", "resolution", "description")
    for i, col in enumerate(table.columns):  # fit 80 columns: aliases whole, long words folded, never "…"
        col.no_wrap, col.overflow = i == 0, "fold"
    for p in PRETRAINED.values():
        table.add_row(p.alias, p.family, str(p.resolution), p.description)
    console = Console()
    console.print(table)
    console.print("download URLs: clipstyle networks --urls")


@handle_errors
def convert_command(src: Annotated[str, typer.Argument(help="Network to convert (alias, path or URL; any supported format).")],
                    out: Annotated[Path, typer.Argument(help="Output file: .safetensors (clipstyle) or .pt (rosinality "
                                                             "{'g_ema', 'latent_avg'}, StyleGAN2 only); not overwritten "
                                                             "unless --overwrite.")],
                    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False) -> None:
    """Convert any supported checkpoint: to clipstyle's safetensors (fast, safe, bit-exact) or, for StyleGAN2, to
    rosinality's .pt for StyleCLIP / e4e / StyleGAN-NADA. The format follows OUT's extension."""
    from clipstyle.generator import load_generator
    from clipstyle.generator.formats.writers import (
        output_format,
        public_source,
        save_network,
    )

    output_format(out)  # refuse an extension we cannot write before loading anything
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; pass --overwrite or choose another path")
    if not out.parent.is_dir():
        raise UsageError(f"the folder of OUT does not exist: {out.parent}")
    G = load_generator(src)
    for note in save_network(G, out, meta={"converted_from": public_source(G.source.source),
                                           "original_format": G.source.format}):
        typer.echo(f"note: {note}", err=True)
    typer.echo(str(out))


def _generate(settings, front) -> None:
    """Render images for seeds (like NVIDIA's gen_images.py): seedNNNN.png + seedNNNN.npz each."""
    from clipstyle.cli.derive import run_and_save
    from clipstyle.workflows.registry import get_workflow

    run_and_save(get_workflow("generate"), settings, front,
                 note=lambda text: typer.echo(f"note: {text}; pass --truncation 1 for none", err=True))


def _generate_command():
    from clipstyle.cli.derive import workflow_command

    return workflow_command("generate", _generate)


generate_command = _generate_command()


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
    app.command("networks")(networks_command)
    app.command("convert")(convert_command)
    app.command("generate")(generate_command)
