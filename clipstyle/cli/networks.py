"""Commands about networks: ``info``, ``networks``, ``convert``, ``generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, handle_errors
from clipstyle.cli.text import DeviceOpt, NetworkOpt


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
def networks_command() -> None:
    """List the pretrained aliases and the URLs they download from (once, into the cache)."""
    from rich.console import Console
    from rich.table import Table

    from clipstyle.generator.registry import PRETRAINED

    table = Table("alias", "family", "resolution", "description")
    for i, col in enumerate(table.columns):  # fit 80 columns: aliases whole, long words folded, never "…"
        col.no_wrap, col.overflow = i == 0, "fold"
    for p in PRETRAINED.values():
        table.add_row(p.alias, p.family, str(p.resolution), p.description)
    Console().print(table)


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


@handle_errors
def generate_command(
    network: NetworkOpt = "ffhq",
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-7,12 (same z as NVIDIA's gen_images.py).")] = "0-3",
    truncation: Annotated[Optional[float], typer.Option(help="Truncation psi (1 = none). Default 1, or 0.7 for "
                                                             "StyleGAN1 networks (their documented default).")] = None,
    truncation_cutoff: Annotated[Optional[int], typer.Option(help="Truncate only rows below this (default: all "
                                                                  "rows; 8 for StyleGAN1 networks).", min=0)] = None,
    truncate_to: Annotated[str, typer.Option(help="Centre of truncation: 'global' (the network's w_avg) or 'label' "
                                                  "(mean w of the --class label, for conditional networks).")] = "global",
    class_idx: Annotated[Optional[str], typer.Option("--class", help="Class label(s) for conditional networks: K, "
                                                     "K1,K2,… (sum), …@S (scaled) or a .npy vector.")] = None,
    label_scale: Annotated[float, typer.Option(help="Multiply the --class label vector by this.")] = 1.0,
    noise_mode: Annotated[str, typer.Option(help="const, random or none (StyleGAN1/2 noise inputs).")] = "const",
    rotate: Annotated[Optional[float], typer.Option(help="StyleGAN3: rotate the input by DEG degrees "
                                                         "(default: the checkpoint's stored transform).")] = None,
    translate: Annotated[Optional[str], typer.Option(help="StyleGAN3: translate the input by X,Y.")] = None,
    grid: Annotated[bool, typer.Option(help="Also write grid.png with every image.")] = False,
    outdir: Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")] = Path("out"),
    device: DeviceOpt = "auto",
) -> None:
    """Render images for seeds (like NVIDIA's gen_images.py): seedNNNN.png + seedNNNN.npz each, streamed to disk."""
    from clipstyle.pipelines.generate_stream import generate_to

    folder = generate_to(outdir, network=network, seeds=seeds, truncation=truncation,
                         truncation_cutoff=truncation_cutoff, truncate_to=truncate_to, class_idx=class_idx,
                         label_scale=label_scale, noise_mode=noise_mode, rotate=rotate, translate=translate, grid=grid,
                         device=device,
                         note=lambda text: typer.echo(f"note: {text}; pass --truncation 1 for none", err=True))
    typer.echo(str(folder))


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
    app.command("networks")(networks_command)
    app.command("convert")(convert_command)
    app.command("generate")(generate_command)
