"""Creative commands: ``styleblocks``, ``mix``, ``blend``, ``render``, ``interpolate``, ``direction …``, ``recipes``.

Latent sources everywhere are seeds (``42``, ``42@0.7``, ``0-3``) or latent ``.npz`` files
(``face.npz``, ``face.npz#1``); see :mod:`clipstyle.latents.constraints`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, handle_errors, resolve_device
from clipstyle.cli.text import DeviceOpt, NetworkOpt

TruncOpt = Annotated[float, typer.Option(help="Truncation psi for seed latents (1 = none).")]
ClassOpt = Annotated[Optional[str], typer.Option("--class", help="Class label(s) for conditional networks: K, K1,K2,… (sum), …@S (scaled) or a .npy vector.")]
NoiseOpt = Annotated[str, typer.Option(help="const, random or none (StyleGAN2 noise inputs).")]
OutdirOpt = Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")]
BlendOpt = Annotated[Optional[str], typer.Option(help="Render in a blended network NETWORK@RES[:SMOOTH]: synthesis "
                                                 "layers up to RES from --network, the rest from NETWORK.")]
FileNetworkOpt = Annotated[Optional[str], typer.Option(
    "--network", "-n", help="Generator (alias, path or URL); default: the network recorded in the latent file, "
    "else ffhq.")]
FileNoiseOpt = Annotated[bool, typer.Option(help="Render with the StyleGAN2 noise maps stored in the latent file "
                                            "(by 'clipstyle project'), when it has them and --noise-mode is const.")]
FpsOpt = Annotated[float, typer.Option(help="Frames per second of the GIF/MP4.", min=0.1)]


def _grid(images):
    from clipstyle.pipelines.run import grid_of

    return grid_of(images)


def _save_npy(out: Path, direction) -> None:
    """Write a direction ``.npy`` (float32, no pickle) atomically."""
    import io

    import numpy as np

    from clipstyle.io.files import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, direction.numpy().astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out, buf.getvalue())


@handle_errors
def styleblocks_command(
    seed: Annotated[Optional[int], typer.Option(help="Start from this seed's latent.")] = None,
    latents: Annotated[Optional[str], typer.Option(help="…or from a latent .npz (item 0, or FILE#i).")] = None,
    blocks: Annotated[str, typer.Option(help="Styleblocks to explore: indices, ranges, coarse/middle/fine, all.")] = "all",
    scale: Annotated[str, typer.Option(help="Factor range LO:HI for the row (negative allowed: -2:2).")] = "0:1",
    frames: Annotated[int, typer.Option(help="Factors per block (columns of the sheet, GIF frames).", min=1)] = 10,
    around: Annotated[str, typer.Option(help="zero: multiply the row; avg: scale it about w_avg.")] = "zero",
    network: FileNetworkOpt = None, truncation: TruncOpt = 1.0, class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const", fps: FpsOpt = 10.0, outdir: OutdirOpt = Path("out"), device: DeviceOpt = "auto",
) -> None:
    """Scale one styleblock (row of ws) at a time: a GIF per block and a contact sheet (rows = blocks, columns = factors)."""
    from clipstyle.pipelines.creative import styleblocks

    if (seed is None) == (latents is None):
        raise UsageError("give exactly one of --seed S or --latents FILE")
    run = styleblocks(seed=seed, latents=latents, blocks=blocks, scale=scale, frames=frames, around=around,
                      network=network, truncation=truncation, class_idx=class_idx, noise_mode=noise_mode, fps=fps,
                      device=resolve_device(device))
    typer.echo(str(run.save(outdir)))

@handle_errors
def mix_command(
    rows: Annotated[str, typer.Option("--rows", help="Row sources (the rest of the styles): seeds/ranges/.npz, comma list.")],
    cols: Annotated[str, typer.Option("--cols", help="Column sources (provide --blocks): seeds/ranges/.npz, comma list.")],
    blocks: Annotated[str, typer.Option(help="Styleblocks taken from the column source, e.g. 0-3 or coarse.")] = "coarse",
    network: NetworkOpt = "ffhq", truncation: TruncOpt = 1.0, class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const", outdir: OutdirOpt = Path("out"), device: DeviceOpt = "auto",
) -> None:
    """Style-mixing grid (Karras et al. 2019, §3.1): cell (a, b) takes --blocks from column b, every other row from row a.

    Writes grid.png (top row: the column images, left column: the row images) and each mixed
    image as mix-ROW-COL.png with its latent mix-ROW-COL.npz.
    """
    from clipstyle.pipelines.creative import mix_grid

    run = mix_grid(rows=rows, cols=cols, blocks=blocks, network=network, truncation=truncation, class_idx=class_idx,
                   noise_mode=noise_mode, device=resolve_device(device))
    typer.echo(str(run.save(outdir)))

@handle_errors
def blend_command(
    network_a: Annotated[str, typer.Argument(metavar="A", help="Network for resolutions <= --at, mapping and w_avg.")],
    network_b: Annotated[str, typer.Argument(metavar="B", help="Network for the higher resolutions (same architecture).")],
    at: Annotated[int, typer.Option(help="Cut resolution (power of two): layers at <= AT from A, the rest from B.")] = 32,
    smooth: Annotated[Optional[float], typer.Option(help="Spread the switch to B over this many more octaves above AT.",
                                                    min=0)] = None,
    out: Annotated[Path, typer.Option(help="Output network: .safetensors (clipstyle) or .pt (rosinality, StyleGAN2).")] = Path("blended.safetensors"),
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Network blending (Pinkney & Adler 2020, 'toonify'): write a generator mixing A's low and B's high resolutions."""
    from clipstyle.generator.formats.writers import output_format, public_source, save_network
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.pipelines.creative import blend

    output_format(out)  # refuse an extension we cannot write before loading anything
    refuse_overwrite(out, overwrite)
    if not out.parent.is_dir():
        raise UsageError(f"the folder of --out does not exist: {out.parent}")
    G = blend(network_a, network_b, at=at, smooth=smooth, device="cpu")
    for note in save_network(G, out, meta={"blend": {"a": public_source(network_a), "b": public_source(network_b),
                                                     "at": at, "smooth": smooth}}):
        typer.echo(f"note: {note}", err=True)
    typer.echo(str(out))

@handle_errors
def render_command(
    latents: Annotated[str, typer.Argument(help="Latent .npz (all items; FILE#i for one) or seeds (0-3).")],
    network: FileNetworkOpt = None, blend: BlendOpt = None, file_noise: FileNoiseOpt = True,
    out: Annotated[Optional[Path], typer.Option(help="Output PNG (default: LATENTS-render.png beside the file; "
                                                "a grid when there are several latents).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    truncation: TruncOpt = 1.0, class_idx: ClassOpt = None, noise_mode: NoiseOpt = "const", device: DeviceOpt = "auto",
) -> None:
    """Render a latent file (e.g. a projection) to PNG, optionally in a blended network (photo → painting)."""
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.pipelines.creative import render
    from clipstyle.render.files import save_png

    if out is None:
        p = Path(latents.split("#")[0])
        base = p.parent / p.stem if p.suffix == ".npz" else Path(f"seeds-{latents}")
        out = Path(f"{base}-{'blend' if blend else 'render'}.png")
    refuse_overwrite(out, overwrite)
    run = render(latents, network=network, blend=blend, truncation=truncation, class_idx=class_idx,
                 noise_mode=noise_mode, file_noise=file_noise, device=resolve_device(device))
    save_png(out, run.result_image if run.result_image is not None else _grid(run.images))
    typer.echo(str(out))

@handle_errors
def interpolate_command(
    sources: Annotated[list[str], typer.Argument(help="Keyframes: seeds (42, 42@0.7, 0-3) or latent .npz files.")],
    frames: Annotated[int, typer.Option(help="Frames per segment (keyframe to next).", min=1)] = 30,
    mode: Annotated[str, typer.Option(help="lerp or slerp (Shoemake 1985; about w_avg in W, about 0 in Z).")] = "lerp",
    space: Annotated[str, typer.Option(help="w: interpolate ws; z: interpolate z and map each frame with --truncation "
                                       "(needs z: seeds, or latent files that store z).")] = "w",
    loop: Annotated[bool, typer.Option(help="Go back to the first keyframe (seamless loop).")] = False,
    mp4: Annotated[bool, typer.Option(help="Also write an MP4 (needs imageio-ffmpeg).")] = False,
    network: FileNetworkOpt = None, truncation: TruncOpt = 1.0, class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const", fps: FpsOpt = 15.0, outdir: OutdirOpt = Path("out"), device: DeviceOpt = "auto",
) -> None:
    """Interpolate between latents → interpolation.gif (+ .mp4), latents.npz with every frame's ws."""
    from clipstyle.pipelines.creative import interpolate
    from clipstyle.render.files import VIDEO_INSTALL_HINT, save_mp4, video_available

    run = interpolate(sources, frames=frames, mode=mode, space=space, loop=loop, network=network,
                      truncation=truncation, class_idx=class_idx, noise_mode=noise_mode, fps=fps,
                      device=resolve_device(device))
    run_dir = run.save(outdir)
    if mp4:
        if video_available():
            save_mp4(run_dir / "interpolation.mp4", list(run.images), fps=fps)
        else:
            typer.echo(f"note: no MP4 written: it needs the imageio-ffmpeg package ({VIDEO_INSTALL_HINT})", err=True)
    typer.echo(str(run_dir))

direction_app = typer.Typer(help="Latent directions: apply one, learn one from labelled latents, or find one from text.",
                            no_args_is_help=True)


@direction_app.command("apply")
@handle_errors
def direction_apply_command(
    latents: Annotated[str, typer.Argument(help="Latent .npz (item 0, or FILE#i) or a seed.")],
    direction: Annotated[Path, typer.Argument(help="Direction file: .npy/.npz/.pt, [w_dim] or [num_ws, w_dim], "
                                                   "or a GANSpace PCA file with --component.")],
    strength: Annotated[str, typer.Option(help="Strength range LO:HI (ws + s·direction).")] = "-5:5",
    component: Annotated[Optional[int], typer.Option(help="GANSpace file: use principal component K.", min=0)] = None,
    sigma: Annotated[Optional[float], typer.Option(help="GANSpace file: scale the component by S standard "
                                                        "deviations (default 1).")] = None,
    frames: Annotated[int, typer.Option(help="Number of strengths (GIF frames).", min=1)] = 11,
    blocks: Annotated[Optional[str], typer.Option(help="Only move these styleblocks (default: all).")] = None,
    network: FileNetworkOpt = None, file_noise: FileNoiseOpt = True, truncation: TruncOpt = 1.0,
    class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const", fps: FpsOpt = 10.0, outdir: OutdirOpt = Path("out"), device: DeviceOpt = "auto",
) -> None:
    """Walk a latent along a direction → direction.gif, strip.png, latents.npz."""
    from clipstyle.pipelines.directions import direction_apply

    run = direction_apply(latents, direction, strength=strength, frames=frames, blocks=blocks, network=network,
                          component=component, sigma=sigma, truncation=truncation, class_idx=class_idx, noise_mode=noise_mode, file_noise=file_noise,
                          fps=fps, device=resolve_device(device))
    typer.echo(str(run.save(outdir)))

@direction_app.command("learn")
@handle_errors
def direction_learn_command(
    positive: Annotated[list[Path], typer.Option(help="Folder (or .npz files) of latents WITH the attribute; repeatable.")],
    negative: Annotated[list[Path], typer.Option(help="Folder (or .npz files) of latents WITHOUT it; repeatable.")],
    out: Annotated[Path, typer.Option(help="Output .npy direction.")] = Path("direction.npy"),
    space: Annotated[str, typer.Option(help="w: one vector per latent (mean of its rows) → [w_dim]; "
                                       "w+: all rows → [num_ws, w_dim].")] = "w",
    method: Annotated[str, typer.Option(help="logistic (regression) or svm (linear, squared hinge).")] = "logistic",
    holdout: Annotated[float, typer.Option(help="Held-out fraction of each set for the accuracy.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the train/held-out split.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Learn an attribute direction from two sets of latents (InterFaceGAN: the unit normal of a linear boundary)."""
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.pipelines.directions import direction_learn

    refuse_overwrite(out, overwrite)
    res = direction_learn(positive, negative, space=space, method=method, holdout=holdout, seed=seed)
    _save_npy(out, res.direction)
    typer.echo(f"held-out accuracy {res.test_accuracy:.1%} ({res.n_test} latents), train {res.train_accuracy:.1%} "
               f"({res.n_train}); direction {list(res.direction.shape)} → {out}")

@direction_app.command("from-text")
@handle_errors
def direction_from_text_command(
    source: Annotated[str, typer.Argument(help="Text for the images as they are, e.g. 'a face'.")],
    target: Annotated[str, typer.Argument(help="Text for the edited images, e.g. 'a smiling face'.")],
    seeds: Annotated[str, typer.Option(help="Samples the direction must work for (seeds, e.g. 0-7).")] = "0-3",
    steps: Annotated[int, typer.Option(help="Optimization steps.", min=1)] = 100,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate.")] = 0.02,
    blocks: Annotated[Optional[str], typer.Option(help="Styleblocks the direction may use (default all).")] = None,
    l2: Annotated[float, typer.Option(help="Penalty on the direction's mean squared row norm.", min=0)] = 0.0,
    ensemble: Annotated[bool, typer.Option(help="Average the texts over the shipped prompt templates.")] = False,
    cutouts: Annotated[int, typer.Option(help="CLIP cutouts per image.", min=0)] = 8,
    out: Annotated[Path, typer.Option(help="Output .npy [num_ws, w_dim].")] = Path("direction.npy"),
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    network: NetworkOpt = "ffhq",
    clip_model: Annotated[str, typer.Option(help="open_clip model name or model-config .json.")] = "ViT-B-32",
    clip_pretrained: Annotated[str, typer.Option(help="open_clip pretrained tag, checkpoint path, or none.")] = "openai",
    truncation: TruncOpt = 0.7, class_idx: ClassOpt = None, device: DeviceOpt = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Find a W+ direction that turns SOURCE into TARGET across several samples (directional CLIP loss)."""
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.optimize.progress import ProgressBar
    from clipstyle.pipelines.directions import direction_from_text

    refuse_overwrite(out, overwrite)
    from clipstyle.pipelines.common import parse_seeds

    parse_seeds(seeds)  # a malformed --seeds is a usage error before anything loads
    with ProgressBar("direction", steps, enabled=not quiet) as bar:
        res = direction_from_text(source, target, seeds=seeds, steps=steps, lr=lr, blocks=blocks, l2=l2,
                                  ensemble=ensemble, cutouts=cutouts, network=network, clip_model=clip_model,
                                  clip_pretrained=clip_pretrained, truncation=truncation, class_idx=class_idx,
                                  device=resolve_device(device), callback=bar, quiet=quiet)
    _save_npy(out, res.direction)
    typer.echo(f"direction {list(res.direction.shape)} → {out} (the optimized edit is strength {res.strength:.3g}; "
               f"final loss {res.history[-1]:.4f})")

@handle_errors
def recipes_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the curated edit recipes (use one with --recipe NAME)."""
    import dataclasses
    import json

    from rich.console import Console
    from rich.table import Table

    from clipstyle.guidance.recipes import list_recipes

    items = list_recipes()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in items], indent=2))
        return
    table = Table("name", "category", "edit", "source → target", "blocks", "strengths")
    for i, col in enumerate(table.columns):  # fit 80 columns: names and block sets whole, long words folded, never "…"
        col.no_wrap, col.overflow = i in (0, 4), "fold"
    for r in items:
        table.add_row(r.name, r.category, r.description, f"{r.source} → {r.target}", r.blocks,
                      f"{r.strengths[0]:g}:{r.strengths[1]:g}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the clipstyle app."""
    app.command("styleblocks")(styleblocks_command)
    app.command("mix")(mix_command)
    app.command("blend")(blend_command)
    app.command("render")(render_command)
    app.command("interpolate")(interpolate_command)
    app.command("recipes")(recipes_command)
    from clipstyle.cli import direction_extra

    direction_extra.register(direction_app)
    app.add_typer(direction_app, name="direction")
