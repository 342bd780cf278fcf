"""Commands about networks: ``info``, ``networks``, ``convert``, ``generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, class_vector, handle_errors, resolve_device
from clipstyle.cli.text import DeviceOpt, NetworkOpt


def parse_seeds(spec: str) -> list[int]:
    """``0-7,12`` → ``[0, 1, …, 7, 12]``. Raises UsageError for malformed or negative items."""
    seeds: list[int] = []
    for item in spec.split(","):
        item = item.strip()
        try:
            if "-" in item[1:]:
                a, b = item.split("-", 1)
                lo, hi = int(a), int(b)
                if lo > hi:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise UsageError(f"bad seed {item!r} in --seeds {spec!r}: use e.g. 0-7,12") from None
    if any(s < 0 or s >= 2**32 for s in seeds):
        raise UsageError("seeds must be in 0 … 2**32-1")
    return seeds


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
                    out: Annotated[Path, typer.Argument(help="Output .safetensors file (not overwritten unless --overwrite).")],
                    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False) -> None:
    """Convert any supported checkpoint into clipstyle's own safetensors format (fast, safe, bit-exact)."""
    from clipstyle.generator import load_generator
    from clipstyle.generator.formats.native import save_native

    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; pass --overwrite or choose another path")
    G = load_generator(src)
    save_native(G, out, meta={"converted_from": G.source.source, "original_format": G.source.format})
    typer.echo(str(out))


@handle_errors
def generate_command(
    network: NetworkOpt = "ffhq",
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-7,12 (same z as NVIDIA's gen_images.py).")] = "0-3",
    truncation: Annotated[float, typer.Option(help="Truncation psi (1 = none, 0.7 is a common choice).")] = 1.0,
    class_idx: Annotated[Optional[int], typer.Option("--class", help="Class label for conditional networks.")] = None,
    noise_mode: Annotated[str, typer.Option(help="const, random or none (StyleGAN2 noise inputs).")] = "const",
    grid: Annotated[bool, typer.Option(help="Also write grid.png with every image.")] = False,
    outdir: Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")] = Path("out"),
    device: DeviceOpt = "auto",
) -> None:
    """Render images for seeds (like NVIDIA's gen_images.py): seedNNNN.png + seedNNNN.npz each."""
    import torch

    from clipstyle.generator import load_generator
    from clipstyle.io.files import atomic_write_json, make_run_dir
    from clipstyle.latents import save_latents, start_ws
    from clipstyle.optimize.loop import to_uint8_frames
    from clipstyle.pipelines.runfolder import versions
    from clipstyle.render.files import make_grid, save_png

    if noise_mode not in ("const", "random", "none"):
        raise UsageError(f"--noise-mode must be const, random or none, got {noise_mode!r}")
    seed_list = parse_seeds(seeds)
    dev = resolve_device(device)
    G = load_generator(network, device=dev)
    c = class_vector(G.c_dim, class_idx, 1, dev)
    run_dir = make_run_dir(outdir, f"generate-seeds-{seeds}")
    images = []
    with torch.no_grad():
        for s in seed_list:
            ws, z = start_ws(G, seed=s, truncation_psi=truncation, c=c)
            img = to_uint8_frames(G.synthesis(ws, noise_mode=noise_mode))[0]
            save_png(run_dir / f"seed{s:04d}.png", img)
            save_latents(run_dir / f"seed{s:04d}.npz", ws, z=z, c=c,
                         meta={"seed": s, "truncation_psi": truncation, "network": G.source.source})
            images.append(img)
    if grid:
        save_png(run_dir / "grid.png", make_grid(images))
    atomic_write_json(run_dir / "run.json", {"settings": {"command": "generate", "network": network, "seeds": seed_list,
                      "truncation": truncation, "class": class_idx, "noise_mode": noise_mode},
                      "network": G.describe(), "versions": versions()})
    typer.echo(str(run_dir))


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
    app.command("networks")(networks_command)
    app.command("convert")(convert_command)
    app.command("generate")(generate_command)
