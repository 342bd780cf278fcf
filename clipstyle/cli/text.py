"""The main job: ``clipstyle "PROMPT"`` — optimize a StyleGAN's W+ latent against CLIP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, class_vector, handle_errors, resolve_device

NetworkOpt = Annotated[str, typer.Option("--network", "-n", help="Generator: an alias (ffhq, metfaces, sg3-ffhq-r…; see "
                                         "'clipstyle networks'), a checkpoint path, or a file:// / https:// URL.")]
ClipModelOpt = Annotated[str, typer.Option(help="open_clip model name (ViT-B-32, ViT-L-14…) or a path to an open_clip "
                                           "model-config .json.")]
ClipPretrainedOpt = Annotated[str, typer.Option(help="open_clip pretrained tag (openai, laion2b_s34b_b79k…), a local "
                                                "checkpoint path, or 'none' for random weights (tests).")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")]


@handle_errors
def text_command(
    prompt: Annotated[str, typer.Argument(help="What to draw. Weighted prompts: \"a:1 | b:0.5 | c:-1\" (negative "
                                          "weights push away); \"@photo.png\" inside a prompt is an image prompt.")] = "",
    network: NetworkOpt = "ffhq",
    clip_model: ClipModelOpt = "ViT-B-32",
    clip_pretrained: ClipPretrainedOpt = "openai",
    steps: Annotated[int, typer.Option(help="Optimization steps.", min=1)] = 300,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (ramped up over the first 5% of steps, cosine "
                                      "ramp-down over the last 25%).")] = 0.1,
    seed: Annotated[Optional[int], typer.Option(help="Start from the image of this seed (same z as NVIDIA's "
                                                "gen_images.py) instead of the average latent w_avg.")] = None,
    truncation: Annotated[float, typer.Option(help="Truncation psi for the seed's start latent (1 = none).")] = 1.0,
    class_idx: Annotated[Optional[str], typer.Option("--class", help="Class label(s) for conditional networks: K, K1,K2,… (sum), …@S (scaled) or a .npy vector.")] = None,
    blocks: Annotated[Optional[str], typer.Option(help="Styleblocks (rows of ws) to optimize, e.g. 0-3,8 or "
                                                  "coarse,middle; the other rows stay exactly at the start.")] = None,
    cutouts: Annotated[Optional[int], typer.Option(help="Random crops per image fed to CLIP in one batch "
                                                   "(default 32 on GPU, 8 on CPU; 0 = whole image only).",
                                                   min=0)] = None,
    l2: Annotated[Optional[float], typer.Option(help="Weight of the L2 penalty keeping ws near its start (default 0, "
                                                "or the recipe's keep weight).", min=0)] = None,
    image_prompt: Annotated[Optional[Path], typer.Option(help="An image whose CLIP embedding the result should match.")] = None,
    mix: Annotated[Optional[list[str]], typer.Option(help="Style mixing constraint SOURCE:BLOCKS (repeatable): fix those "
                                                     "rows to another latent, e.g. 42:0-3, 42@0.7:coarse, face.npz:fine.")] = None,
    blend: Annotated[Optional[str], typer.Option(help="Optimize and render in a blended network NETWORK@RES[:SMOOTH]: "
                                                 "layers up to RES from --network, the rest from NETWORK.")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="A curated edit ('clipstyle recipes'): its directional CLIP loss, "
                                                  "blocks and keep weight (options given explicitly win).")] = None,
    batch: Annotated[int, typer.Option(help="Optimize N starts in one batch (seeds SEED…SEED+N-1, or seeds 0…N-1 "
                                       "truncated to psi 0.25 around w_avg without --seed); writes a grid.",
                                       min=1)] = 1,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="A text file with one prompt per line (blank lines "
                                                    "and # comments skipped); each prompt gets its own run folder.")] = None,
    save_every: Annotated[int, typer.Option(help="Keep a GIF frame every N steps.", min=1)] = 10,
    outdir: Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")] = Path("out"),
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option(help="Generator forward precision: fp32, or bf16/fp16 autocast (faster on "
                                           "GPUs; the latent and the loss stay float32).")] = "fp32",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Draw PROMPT: optimize the generator's W+ latent so CLIP sees the prompt in the image.

    Writes result.png, progress.gif, latents.npz and run.json into a new folder under --outdir and prints
    its path. 'clipstyle commands' lists the other commands (info, generate, project, edit, mix, blend…).
    Constraints: --blocks (rows to optimize), --mix (rows fixed to another latent), --blend (optimize in a
    blended network). --recipe NAME applies a curated edit ('clipstyle recipes'); --batch N optimizes N
    starts at once; --prompts FILE runs one prompt per line, each in its own folder.
    """
    from clipstyle.guidance import CLIPGuide

    if prompts is not None:
        if prompt.strip():
            raise UsageError("give either a PROMPT or --prompts FILE, not both")
        prompt_list = read_prompts_file(prompts)
    else:
        if not prompt.strip() and image_prompt is None and recipe is None:
            raise UsageError("the prompt is empty: say what to draw, e.g. clipstyle \"a smiling child\"")
        prompt_list = [prompt]
    if image_prompt is not None and not image_prompt.is_file():
        raise UsageError(f"no such image: {image_prompt}")
    dev = resolve_device(device)
    from clipstyle.optimize.loop import PRECISIONS

    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    rec = None
    if recipe is not None:
        from clipstyle.guidance.recipes import get_recipe

        rec = get_recipe(recipe)
    G = _load_network(network, blend, dev, quiet)
    free, mixed, c = _constraints(G, rec, blocks, mix or [], class_idx, batch, dev)  # user errors before CLIP loads
    guide = CLIPGuide(clip_model, None if clip_pretrained.lower() == "none" else clip_pretrained, device=dev)
    settings = {"command": "text", "network": network, "clip_model": clip_model, "clip_pretrained": clip_pretrained,
                "steps": steps, "lr": lr, "seed": seed, "truncation": truncation, "class": class_idx,
                "image_prompt": str(image_prompt) if image_prompt else None, "save_every": save_every,
                "device": dev, "precision": precision, "noise_mode": "const", "mix": list(mix or []), "blend": blend,
                "recipe": rec.name if rec else None, "batch": batch,
                "prompts_file": str(prompts) if prompts is not None else None}
    for text in prompt_list:
        run_dir = _optimize_prompt(G, guide, text, rec, settings, free=free, mixed=mixed, c=c, cutouts=cutouts,
                                   l2=l2, image_prompt=image_prompt, outdir=outdir, quiet=quiet)
        typer.echo(str(run_dir))


def read_prompts_file(path: Path) -> list[str]:
    """Prompts of a ``--prompts`` file: one per line, stripped; blank lines and ``#`` comments skipped.

    Raises:
        UsageError: the file is missing or unreadable, or holds no prompt.
    """
    if not path.is_file():
        raise UsageError(f"no such prompts file: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read prompts file {path}: {type(exc).__name__}") from None
    items = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not items:
        raise UsageError(f"{path} holds no prompt (one per line; # starts a comment)")
    return items


def _load_network(network: str, blend: str | None, dev: str, quiet: bool):
    from clipstyle.generator import load_generator

    G = load_generator(network, device=dev, progress=not quiet)
    if blend:
        from clipstyle.latents.constraints import blend_from_spec

        G = blend_from_spec(G, blend, dev, progress=not quiet)
    return G


def _constraints(G, rec, blocks: str | None, mix: list[str], class_idx: int | None, batch: int, dev: str):
    """Free rows (``--blocks``, else the recipe's), mixed rows (``--mix``) and labels ``[batch, c_dim]``."""
    from clipstyle.latents.constraints import constraint_rows

    c = class_vector(G.c_dim, class_idx, batch, dev)
    free, mixed = constraint_rows(G, blocks, mix, rec, dev, c[:1])
    return free, mixed, c


def _optimize_prompt(G, guide, prompt: str, rec, base_settings: dict, *, free, mixed: dict, c, cutouts: int | None,
                     l2: float | None, image_prompt: Path | None, outdir: Path, quiet: bool) -> Path:
    """One optimization of the main command (one prompt, one batch); returns its run folder."""
    import torch

    from clipstyle.guidance import (
        CombinedLoss,
        CutoutConfig,
        Cutouts,
        DirectionalLoss,
        LatentL2,
        build_prompt_loss,
    )
    from clipstyle.io.files import make_run_dir
    from clipstyle.latents import Latent, start_ws
    from clipstyle.latents.constraints import apply_mix, batch_starts, latent_l2_weight
    from clipstyle.optimize.loop import Schedule, run
    from clipstyle.optimize.progress import ProgressBar
    from clipstyle.pipelines.runfolder import save_run
    from clipstyle.render.files import save_png

    s = base_settings
    dev, seed, n = s["device"], s["seed"], s["batch"]
    num_cutouts = cutouts if cutouts is not None else (32 if str(dev).startswith("cuda") else 8)
    schedule = Schedule(lr=s["lr"], steps=s["steps"])
    if n == 1:
        ws0, z = start_ws(G, seed=seed, truncation_psi=s["truncation"], c=c)
    else:
        ws0, z = batch_starts(G, n, seed, s["truncation"], c)
    cut = Cutouts(CutoutConfig(num_cutouts=num_cutouts), guide.input_size)
    terms = []
    if prompt.strip() or image_prompt is not None:
        terms = build_prompt_loss(guide, prompt, cut, image_prompt=str(image_prompt) if image_prompt else None)
    if rec is not None:
        with torch.no_grad():
            x0 = G.synthesis(apply_mix(ws0, mixed), noise_mode="const")
        terms.append((DirectionalLoss(guide, rec.source, rec.target, x0, cut), rec.strength))
    l2_weight = latent_l2_weight(l2, rec, G.num_ws, G.w_dim)
    if l2_weight > 0:
        terms.append((LatentL2(ws0), l2_weight))
    loss = CombinedLoss(terms)
    latent = Latent(ws0, free_rows=free, mix=mixed).to(dev)
    torch.manual_seed(0 if seed is None else seed)  # cutout randomness: reproducible runs

    name = prompt or (Path(str(image_prompt)).stem if image_prompt else "") or (rec.name if rec else "run")
    run_dir = make_run_dir(outdir, name)
    settings = {**s, "prompt": prompt, "blocks": list(latent.free_rows), "cutouts": num_cutouts, "l2": l2_weight,
                "mixed_rows": sorted(mixed)}
    with ProgressBar("optimizing", s["steps"], enabled=not quiet) as bar:
        result = run(G, latent, loss, schedule, save_every=s["save_every"], callbacks=[bar],
                     precision=s["precision"])
    save_run(run_dir, result, settings, G.describe(), z=z, c=c)
    if n > 1:
        for i, img in enumerate(result.frames[-1]):
            save_png(run_dir / f"item{i}.png", img)
    if result.interrupted:
        typer.echo(f"interrupted after {result.steps_done} steps; kept the best result so far", err=True)
    return run_dir
