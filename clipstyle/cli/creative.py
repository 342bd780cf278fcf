"""Creative commands: ``styleblocks``, ``mix``, ``blend``, ``render``, ``interpolate``, ``direction …``, ``recipes``.

Latent sources everywhere are seeds (``42``, ``42@0.7``, ``0-3``) or latent ``.npz`` files
(``face.npz``, ``face.npz#1``); see :mod:`clipstyle.latents.constraints`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, class_vector, handle_errors, resolve_device
from clipstyle.cli.text import DeviceOpt, NetworkOpt

TruncOpt = Annotated[float, typer.Option(help="Truncation psi for seed latents (1 = none).")]
ClassOpt = Annotated[Optional[int], typer.Option("--class", help="Class label for conditional networks.")]
NoiseOpt = Annotated[str, typer.Option(help="const, random or none (StyleGAN2 noise inputs).")]
OutdirOpt = Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")]
BlendOpt = Annotated[Optional[str], typer.Option(help="Render in a blended network NETWORK@RES[:SMOOTH]: synthesis "
                                                 "layers up to RES from --network, the rest from NETWORK.")]
FpsOpt = Annotated[float, typer.Option(help="Frames per second of the GIF/MP4.", min=0.1)]


def _noise(noise_mode: str) -> str:
    if noise_mode not in ("const", "random", "none"):
        raise UsageError(f"--noise-mode must be const, random or none, got {noise_mode!r}")
    return noise_mode


def _network(network: str, dev: str, blend: str | None = None, quiet: bool = False):
    from clipstyle.generator import load_generator
    from clipstyle.latents.constraints import blend_from_spec

    G = load_generator(network, device=dev, progress=not quiet)
    return blend_from_spec(G, blend, dev, progress=not quiet) if blend else G


def _unique(labels: list[str]) -> list[str]:
    """File-name labels, a repeated one suffixed ``-1``, ``-2``… so no output replaces another."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        k = seen.get(label, 0)
        seen[label] = k + 1
        out.append(label if k == 0 else f"{label}-{k}")
    return out


def _finish(run_dir: Path, settings: dict, G) -> None:
    from clipstyle.io.files import atomic_write_json
    from clipstyle.pipelines.runfolder import versions

    atomic_write_json(run_dir / "run.json", {"settings": settings, "network": G.describe(), "versions": versions()})
    typer.echo(str(run_dir))


@handle_errors
def styleblocks_command(
    seed: Annotated[Optional[int], typer.Option(help="Start from this seed's latent.")] = None,
    latents: Annotated[Optional[str], typer.Option(help="…or from a latent .npz (item 0, or FILE#i).")] = None,
    blocks: Annotated[str, typer.Option(help="Styleblocks to explore: indices, ranges, coarse/middle/fine, all.")] = "all",
    scale: Annotated[str, typer.Option(help="Factor range LO:HI for the row (negative allowed: -2:2).")] = "0:1",
    frames: Annotated[int, typer.Option(help="Factors per block (columns of the sheet, GIF frames).", min=1)] = 10,
    around: Annotated[str, typer.Option(help="zero: multiply the row; avg: scale it about w_avg.")] = "zero",
    network: NetworkOpt = "ffhq", truncation: TruncOpt = 1.0, class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const", fps: FpsOpt = 10.0, outdir: OutdirOpt = Path("out"), device: DeviceOpt = "auto",
) -> None:
    """Scale one styleblock (row of ws) at a time: a GIF per block and a contact sheet (rows = blocks, columns = factors)."""
    from clipstyle.io.files import make_run_dir
    from clipstyle.latents import parse_blocks, save_latents
    from clipstyle.latents.constraints import parse_source
    from clipstyle.latents.styleblocks import factors, parse_range, styleblock_frames
    from clipstyle.render.files import make_grid, save_gif, save_png

    if (seed is None) == (latents is None):
        raise UsageError("give exactly one of --seed S or --latents FILE")
    lo, hi = parse_range(scale, "--scale")
    values = factors(lo, hi, frames)
    dev = resolve_device(device)
    G = _network(network, dev)
    rows = parse_blocks(blocks, G.num_ws, G.block_groups())
    c = class_vector(G.c_dim, class_idx, 1, dev)
    (src,) = parse_source(str(seed) if latents is None else latents, G, dev, truncation, c, allow_many=False)
    run_dir = make_run_dir(outdir, f"styleblocks-{src.label}")
    sheet = []
    for r in rows:
        imgs, ws = styleblock_frames(G, src.ws, r, values, around, _noise(noise_mode))
        save_gif(run_dir / f"block{r:02d}.gif", list(imgs), fps=fps)
        save_latents(run_dir / f"block{r:02d}.npz", ws, meta={"block": r, "factors": values, "source": src.label})
        sheet.extend(imgs)
    save_png(run_dir / "sheet.png", make_grid(sheet, rows=len(rows), cols=len(values)))
    _finish(run_dir, {"command": "styleblocks", "source": src.label, "blocks": list(rows), "factors": values,
                      "around": around, "network": network, "truncation": truncation, "noise_mode": noise_mode}, G)


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
    import numpy as np
    import torch

    from clipstyle.io.files import make_run_dir
    from clipstyle.latents import parse_blocks, save_latents
    from clipstyle.latents.constraints import parse_sources
    from clipstyle.latents.styleblocks import mix_styles, render_ws
    from clipstyle.render.files import make_grid, save_png

    dev = resolve_device(device)
    G = _network(network, dev)
    chosen = parse_blocks(blocks, G.num_ws, G.block_groups())
    c = class_vector(G.c_dim, class_idx, 1, dev)
    a_src = parse_sources(rows, G, dev, truncation, c)
    b_src = parse_sources(cols, G, dev, truncation, c)
    nm = _noise(noise_mode)
    a_img = render_ws(G, torch.cat([s.ws for s in a_src]), nm)
    b_img = render_ws(G, torch.cat([s.ws for s in b_src]), nm)
    run_dir = make_run_dir(outdir, "mix")
    blank = np.full_like(a_img[0], 255)
    cells = [blank, *b_img]
    a_names, b_names = _unique([s.label for s in a_src]), _unique([s.label for s in b_src])
    for i, a in enumerate(a_src):
        mixed = torch.cat([mix_styles(a.ws, b.ws, chosen) for b in b_src])
        imgs = render_ws(G, mixed, nm)
        cells.extend([a_img[i], *imgs])
        for j, b in enumerate(b_src):
            name = f"mix-{a_names[i]}-{b_names[j]}"
            save_png(run_dir / f"{name}.png", imgs[j])
            save_latents(run_dir / f"{name}.npz", mixed[j : j + 1],
                         meta={"row_source": a.label, "col_source": b.label, "blocks_from_col": list(chosen)})
    save_png(run_dir / "grid.png", make_grid(cells, rows=len(a_src) + 1, cols=len(b_src) + 1))
    _finish(run_dir, {"command": "mix", "rows": [s.label for s in a_src], "cols": [s.label for s in b_src],
                      "blocks_from_col": list(chosen), "network": network, "truncation": truncation}, G)


@handle_errors
def blend_command(
    network_a: Annotated[str, typer.Argument(metavar="A", help="Network for resolutions <= --at, mapping and w_avg.")],
    network_b: Annotated[str, typer.Argument(metavar="B", help="Network for the higher resolutions (same architecture).")],
    at: Annotated[int, typer.Option(help="Cut resolution (power of two): layers at <= AT from A, the rest from B.")] = 32,
    smooth: Annotated[Optional[float], typer.Option(help="Spread the switch to B over this many more octaves above AT.",
                                                    min=0)] = None,
    out: Annotated[Path, typer.Option(help="Output network (.safetensors, clipstyle format).")] = Path("blended.safetensors"),
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Network blending (Pinkney & Adler 2020, 'toonify'): write a generator mixing A's low and B's high resolutions."""
    from clipstyle.generator import load_generator
    from clipstyle.generator.blend import blend_generators, check_cut
    from clipstyle.generator.formats.native import save_native
    from clipstyle.io.files import refuse_overwrite

    refuse_overwrite(out, overwrite)
    if not out.parent.is_dir():
        raise UsageError(f"the folder of --out does not exist: {out.parent}")
    G_a = load_generator(network_a)
    check_cut(G_a, at)  # a cut at the top resolution would take nothing from B
    G_b = load_generator(network_b)
    G = blend_generators(G_a, G_b, at, smooth)
    save_native(G, out, meta={"blend": {"a": G_a.source.source, "b": G_b.source.source, "at": at, "smooth": smooth}})
    typer.echo(str(out))


@handle_errors
def render_command(
    latents: Annotated[str, typer.Argument(help="Latent .npz (all items; FILE#i for one) or seeds (0-3).")],
    network: NetworkOpt = "ffhq", blend: BlendOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Output PNG (default: LATENTS-render.png beside the file; "
                                                "a grid when there are several latents).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    truncation: TruncOpt = 1.0, class_idx: ClassOpt = None, noise_mode: NoiseOpt = "const", device: DeviceOpt = "auto",
) -> None:
    """Render a latent file (e.g. a projection) to PNG, optionally in a blended network (photo → painting)."""
    import torch

    from clipstyle.io.files import refuse_overwrite
    from clipstyle.latents.constraints import parse_sources
    from clipstyle.latents.styleblocks import render_ws
    from clipstyle.render.files import make_grid, save_png

    if out is None:
        p = Path(latents.split("#")[0])
        base = p.parent / p.stem if p.suffix == ".npz" else Path(f"seeds-{latents}")
        out = Path(f"{base}-{'blend' if blend else 'render'}.png")
    refuse_overwrite(out, overwrite)
    dev = resolve_device(device)
    G = _network(network, dev, blend)
    srcs = parse_sources(latents, G, dev, truncation, class_vector(G.c_dim, class_idx, 1, dev))
    imgs = render_ws(G, torch.cat([s.ws for s in srcs]), _noise(noise_mode))
    save_png(out, imgs[0] if len(imgs) == 1 else make_grid(imgs))
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
    network: NetworkOpt = "ffhq", truncation: TruncOpt = 1.0, class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const", fps: FpsOpt = 15.0, outdir: OutdirOpt = Path("out"), device: DeviceOpt = "auto",
) -> None:
    """Interpolate between latents → interpolation.gif (+ .mp4), latents.npz with every frame's ws."""
    import torch

    from clipstyle.io.files import make_run_dir
    from clipstyle.latents import save_latents
    from clipstyle.latents.constraints import parse_sources
    from clipstyle.latents.interpolate import MODES, frame_count, interpolate_path
    from clipstyle.latents.styleblocks import render_ws
    from clipstyle.render.files import (
        VIDEO_INSTALL_HINT,
        save_gif,
        save_mp4,
        video_available,
    )

    if mode not in MODES:
        raise UsageError(f"--mode must be lerp or slerp, got {mode!r}")
    if space not in ("w", "z"):
        raise UsageError(f"--space must be w or z, got {space!r}")
    dev = resolve_device(device)
    G = _network(network, dev)
    c = class_vector(G.c_dim, class_idx, 1, dev)
    keys = [s for spec in sources for s in parse_sources(spec, G, dev, truncation, c)]
    if len(keys) < 2:
        raise UsageError("interpolation needs at least two keyframes")
    frame_count(len(keys), frames, loop)
    if space == "z":
        lacking = [k.label for k in keys if k.z is None]
        if lacking:
            raise UsageError(f"--space z needs z for every keyframe, but {lacking[0]} is a latent file without z; "
                             "use seeds, files that store z, or --space w")
        zs = interpolate_path(torch.cat([k.z for k in keys]), frames, mode, loop)
        with torch.no_grad():
            ws = torch.cat([G.mapping(zs[i : i + 16], c.expand(len(zs[i : i + 16]), -1), truncation_psi=truncation)
                            for i in range(0, len(zs), 16)])
    else:
        center = G.w_avg.detach().to(torch.float32)
        ws = interpolate_path(torch.cat([k.ws for k in keys]), frames, mode, loop, center)
    imgs = render_ws(G, ws, _noise(noise_mode))
    run_dir = make_run_dir(outdir, "interpolate-" + "-".join(k.label for k in keys[:4]))
    save_gif(run_dir / "interpolation.gif", list(imgs), fps=fps)
    save_latents(run_dir / "latents.npz", ws, meta={"keyframes": [k.label for k in keys], "mode": mode, "space": space})
    if mp4:
        if video_available():
            save_mp4(run_dir / "interpolation.mp4", list(imgs), fps=fps)
        else:
            typer.echo(f"note: no MP4 written: it needs the imageio-ffmpeg package ({VIDEO_INSTALL_HINT})", err=True)
    _finish(run_dir, {"command": "interpolate", "keyframes": [k.label for k in keys], "frames": frames, "mode": mode,
                      "space": space, "loop": loop, "total_frames": len(imgs), "network": network,
                      "truncation": truncation}, G)


direction_app = typer.Typer(help="Latent directions: apply one, learn one from labelled latents, or find one from text.",
                            no_args_is_help=True)


@direction_app.command("apply")
@handle_errors
def direction_apply_command(
    latents: Annotated[str, typer.Argument(help="Latent .npz (item 0, or FILE#i) or a seed.")],
    direction: Annotated[Path, typer.Argument(help="Direction .npy: [w_dim] or [num_ws, w_dim].")],
    strength: Annotated[str, typer.Option(help="Strength range LO:HI (ws + s·direction).")] = "-5:5",
    frames: Annotated[int, typer.Option(help="Number of strengths (GIF frames).", min=1)] = 11,
    blocks: Annotated[Optional[str], typer.Option(help="Only move these styleblocks (default: all).")] = None,
    network: NetworkOpt = "ffhq", truncation: TruncOpt = 1.0, class_idx: ClassOpt = None,
    noise_mode: NoiseOpt = "const", fps: FpsOpt = 10.0, outdir: OutdirOpt = Path("out"), device: DeviceOpt = "auto",
) -> None:
    """Walk a latent along a direction → direction.gif, strip.png, latents.npz."""
    from clipstyle.io.files import make_run_dir
    from clipstyle.latents import parse_blocks, save_latents
    from clipstyle.latents.constraints import parse_source
    from clipstyle.latents.directions import apply_direction, load_direction
    from clipstyle.latents.styleblocks import factors, parse_range, render_ws
    from clipstyle.render.files import make_grid, save_gif, save_png

    lo, hi = parse_range(strength, "--strength")
    values = factors(lo, hi, frames)
    dev = resolve_device(device)
    G = _network(network, dev)
    d = load_direction(direction, G.num_ws, G.w_dim)
    rows = parse_blocks(blocks, G.num_ws, G.block_groups())
    (src,) = parse_source(latents, G, dev, truncation, class_vector(G.c_dim, class_idx, 1, dev), allow_many=False)
    ws = apply_direction(src.ws, d, values, rows)
    imgs = render_ws(G, ws, _noise(noise_mode))
    run_dir = make_run_dir(outdir, f"direction-{direction.stem}-{src.label}")
    save_gif(run_dir / "direction.gif", list(imgs), fps=fps)
    save_png(run_dir / "strip.png", make_grid(list(imgs), rows=1))
    save_latents(run_dir / "latents.npz", ws, meta={"strengths": values, "direction": str(direction)})
    _finish(run_dir, {"command": "direction apply", "source": src.label, "direction": str(direction),
                      "strengths": values, "blocks": list(rows), "network": network}, G)


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
    import io

    import numpy as np

    from clipstyle.io.files import atomic_write_bytes, refuse_overwrite
    from clipstyle.latents.directions import (
        collect_latents,
        learn_direction,
        normalize_direction,
    )

    refuse_overwrite(out, overwrite)
    pos, _, shape_p = collect_latents(positive, space=space)
    neg, _, shape_n = collect_latents(negative, space=space)
    if shape_p != shape_n:
        raise UsageError(f"the positive latents are {list(shape_p)}, the negative ones {list(shape_n)}")
    res = learn_direction(pos, neg, holdout=holdout, seed=seed, method=method)
    d = res.direction
    if space == "w+":
        d, _ = normalize_direction(d.reshape(shape_p))
    buf = io.BytesIO()
    np.save(buf, d.numpy().astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out, buf.getvalue())
    typer.echo(f"held-out accuracy {res.test_accuracy:.1%} ({res.n_test} latents), train {res.train_accuracy:.1%} "
               f"({res.n_train}); direction {list(d.shape)} → {out}")


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
    import io
    import time

    import numpy as np
    import torch

    from clipstyle.cli.networks import parse_seeds
    from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts
    from clipstyle.guidance.recipes import load_templates
    from clipstyle.io.files import atomic_write_bytes, refuse_overwrite
    from clipstyle.latents import parse_blocks, seed_z
    from clipstyle.latents.directions import direction_from_text
    from clipstyle.optimize.loop import StepInfo
    from clipstyle.optimize.progress import ProgressBar

    refuse_overwrite(out, overwrite)
    seed_list = parse_seeds(seeds)
    dev = resolve_device(device)
    G = _network(network, dev, quiet=quiet)
    rows = parse_blocks(blocks, G.num_ws, G.block_groups())
    c = class_vector(G.c_dim, class_idx, len(seed_list), dev)
    z = torch.from_numpy(np.concatenate([seed_z(s, G.z_dim) for s in seed_list])).to(dev, torch.float32)
    with torch.no_grad():
        ws0 = G.mapping(z, c, truncation_psi=truncation)
    guide = CLIPGuide(clip_model, None if clip_pretrained.lower() == "none" else clip_pretrained, device=dev)
    cut = Cutouts(CutoutConfig(num_cutouts=cutouts), guide.input_size)
    t0 = time.perf_counter()
    with ProgressBar("direction", steps, enabled=not quiet) as bar:
        res = direction_from_text(G, guide, source, target, ws0, cut, rows=rows, steps=steps, lr=lr, l2=l2,
                                  templates=load_templates() if ensemble else None,
                                  callback=lambda s, v: bar(StepInfo(s, steps, lr, v, {"loss": v},
                                                                     time.perf_counter() - t0), None))
    buf = io.BytesIO()
    np.save(buf, res.direction.numpy().astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out, buf.getvalue())
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
    app.add_typer(direction_app, name="direction")
