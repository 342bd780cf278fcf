"""``clipstyle adapt``: make a network for a new domain from two words (StyleGAN-NADA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from clipstyle.cli.common import handle_errors, resolve_device
from clipstyle.cli.text import ClipPretrainedOpt, DeviceOpt, NetworkOpt


@handle_errors
def adapt_command(
    network: NetworkOpt = "ffhq",
    source: Annotated[str, typer.Option(help="The domain the network draws now (text), e.g. 'photo'.")] = "photo",
    target: Annotated[Optional[str], typer.Option(help="The domain to adapt to (text), e.g. 'pencil sketch'.")] = None,
    style_image: Annotated[Optional[List[Path]], typer.Option(
        help="Adapt towards the look of these images instead of --target (repeat for several).")] = None,
    steps: Annotated[int, typer.Option(help="Training iterations (NADA: 300 for most domains).")] = 300,
    batch: Annotated[int, typer.Option(help="Latents per iteration.")] = 2,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (constant here: NADA's 0.002, betas 0 and "
                                      "0.99).")] = 0.002,
    layers: Annotated[str, typer.Option(help="Which synthesis layers train: auto (each iteration, the rows a short "
                                        "latent optimization moves most; NADA Sec. 4.2), all, or ws rows/styleblocks "
                                        "such as 0-7 or coarse,middle.")] = "auto",
    auto_k: Annotated[Optional[int], typer.Option(help="Rows --layers auto picks per iteration (default: two thirds "
                                                  "of the rows).")] = None,
    torgb: Annotated[bool, typer.Option(help="Train the toRGB layers too (frozen by default, like the mapping "
                                        "network).")] = False,
    clip_model: Annotated[str, typer.Option(help="open_clip models used together, comma-separated (NADA: "
                                            "ViT-B-32,ViT-B-16), or a model-config .json.")] = "ViT-B-32,ViT-B-16",
    clip_weights: Annotated[Optional[str], typer.Option(help="Their weights, comma-separated (default: equal).")] = None,
    clip_pretrained: ClipPretrainedOpt = "openai",
    templates: Annotated[bool, typer.Option(help="Average each text over the shipped prompt templates.")] = True,
    cutouts: Annotated[Optional[int], typer.Option(help="Random crops per image fed to CLIP, matched between the "
                                                   "base's and the adapted image (default 0: the whole image, as "
                                                   "NADA).", min=0)] = None,
    seeds: Annotated[str, typer.Option(help="Fixed seeds of the before/after grid, e.g. 0-3.")] = "0-3",
    truncation: Annotated[float, typer.Option(help="Truncation psi of the grid's seeds.")] = 0.7,
    show: Annotated[Optional[List[str]], typer.Option(
        help="More latents for the grid: seeds or latent .npz files (e.g. a projected photo); repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the training latents (not a start image: a network is "
                                      "trained).")] = 0,
    preview_every: Annotated[int, typer.Option(help="A progress-GIF frame every N steps (0: before/after only).")] = 10,
    outdir: Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")] = Path("out"),
    device: DeviceOpt = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Adapt a network to a new domain named by text: 'photo' → 'pencil sketch' (StyleGAN-NADA).

    Writes generator.safetensors (the adapted network; every command reads it, 'clipstyle convert' exports it),
    a before/after grid result.png over --seeds and --show latents, progress.gif, latents.npz (rendering it with
    'clipstyle render' uses the adapted network) and run.json with the loss history. Ctrl-C keeps the best
    network so far.
    """
    from clipstyle.pipelines.adapt import AdaptSettings, adapt

    settings = AdaptSettings(network=network, source=source, target=target, style_images=tuple(style_image or ()),
                             steps=steps, batch=batch, lr=lr, layers=layers, auto_k=auto_k, torgb=torgb,
                             clip_model=clip_model, clip_weights=clip_weights, clip_pretrained=clip_pretrained,
                             templates=templates, cutouts=cutouts or 0, seeds=seeds, truncation=truncation,
                             show=tuple(show or ()), seed=seed, preview_every=preview_every)
    dev = resolve_device(device)
    run = adapt(settings, device=dev, quiet=quiet, log=lambda line: typer.echo(line, err=True))
    typer.echo(str(run.save(outdir)))
    if run.interrupted:
        typer.echo(f"interrupted after {run.result.steps_done} steps; kept the best network so far", err=True)


def register(app: typer.Typer) -> None:
    """Add ``adapt`` to the clipstyle app."""
    app.command("adapt")(adapt_command)
