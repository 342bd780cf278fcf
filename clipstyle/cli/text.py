"""The main job: ``clipstyle "PROMPT"`` — optimize a StyleGAN's W+ latent against CLIP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, class_vector, handle_errors, resolve_device, warn

NetworkOpt = Annotated[str, typer.Option("--network", "-n", help="Generator: an alias (ffhq, metfaces, sg3-ffhq-r…; see "
                                         "'clipstyle networks'), a checkpoint path, or a file:// / https:// URL.")]
ClipModelOpt = Annotated[str, typer.Option(help="open_clip model name (ViT-B-32, ViT-L-14…) or a path to an open_clip "
                                           "model-config .json.")]
ClipPretrainedOpt = Annotated[str, typer.Option(help="open_clip pretrained tag (openai, laion2b_s34b_b79k…), a local "
                                                "checkpoint path, or 'none' for random weights (tests).")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda or mps.")]


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
    log: Annotated[Optional[list[str]], typer.Option("--log", help="Track the run (repeatable): tensorboard[:DIR] "
                                                     "(default DIR ./runs) or mlflow[:URI] (default "
                                                     "$MLFLOW_TRACKING_URI, else ./mlruns); needs the extra "
                                                     "clipstyle[tensorboard] / clipstyle[mlflow].")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Draw PROMPT: optimize the generator's W+ latent so CLIP sees the prompt in the image.

    Writes result.png, progress.gif, latents.npz and run.json into a new folder under --outdir and prints
    its path. 'clipstyle commands' lists the other commands (info, generate, project, edit, mix, blend…).
    Constraints: --blocks (rows to optimize), --mix (rows fixed to another latent), --blend (optimize in a
    blended network). --recipe NAME applies a curated edit ('clipstyle recipes'); --batch N optimizes N
    starts at once; --prompts FILE runs one prompt per line, each in its own folder.
    """
    import dataclasses

    from clipstyle.guidance import CLIPGuide
    from clipstyle.optimize.progress import ProgressBar
    from clipstyle.pipelines.common import load_network
    from clipstyle.pipelines.text import text_to_image
    from clipstyle.tracking import check_log_specs, open_trackers

    log_specs = check_log_specs(log)  # a missing extra: one line before any work
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
    from clipstyle.latents.constraints import constraint_rows

    G = load_network(network, dev, blend, progress=not quiet)  # blended once for every prompt of --prompts
    constraint_rows(G, blocks, mix or [], rec, dev, class_vector(G.c_dim, class_idx, 1, dev))  # before CLIP loads
    guide = CLIPGuide(clip_model, None if clip_pretrained.lower() == "none" else clip_pretrained, device=dev)
    for text in prompt_list:
        name = text or (image_prompt.stem if image_prompt is not None else "") or recipe or "run"
        with ProgressBar("optimizing", steps, enabled=not quiet) as bar, \
                open_trackers(log_specs, name, preview_every=save_every, warn=warn) as trackers:
            run = text_to_image(text, network=network, clip_model=clip_model, clip_pretrained=clip_pretrained,
                                steps=steps, lr=lr, seed=seed, truncation=truncation, blocks=blocks, mix=mix or (),
                                blend=None, recipe=rec, batch=batch, cutouts=cutouts, l2=l2,
                                image_prompt=image_prompt, class_idx=class_idx, save_every=save_every, device=dev,
                                precision=precision, callback=bar, G=G, guide=guide, log=trackers, quiet=quiet)
            run = dataclasses.replace(run, settings={**run.settings, "blend": blend,
                                                     "prompts_file": str(prompts) if prompts is not None else None})
            folder = run.save(outdir)
            trackers.finish(run, folder)  # MLflow stores the saved folder as the run's artifacts
        typer.echo(str(folder))
        if run.interrupted:
            typer.echo(f"interrupted after {run.result.steps_done} steps; kept the best result so far", err=True)


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
