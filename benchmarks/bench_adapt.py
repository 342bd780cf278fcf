"""Iterations per second and peak memory of generator adaptation (``clipstyle adapt``, StyleGAN-NADA).

One iteration = sample ``batch`` latents, the frozen generator's images, the layer selection (``auto``: one
latent-optimization step through the trained copy, forward + backward to ``ws``), the trained copy's images,
the directional CLIP loss of every CLIP model, backward to the trained layers and an Adam step — exactly
:func:`clipstyle.adapt.trainer.adapt_generator`. Random weights everywhere: StyleGAN2 FFHQ configurations
(``channels_for(R, 32768, 512)``, 8 mapping layers, ``skip``, ``conv_clamp=256``) and open_clip models with
``pretrained=None`` (their speed does not depend on the weights).

Modes (``--layers``): ``auto`` (NADA's adaptive selection, k = two thirds of the rows), ``all`` (every layer,
no selection), ``coarse`` (rows 0–3 only: gradients for 4 layers).

Each (config, mode) runs in its own subprocess so peaks do not mix; peak memory is ``ru_maxrss`` on CPU (the
whole process, torch runtime and weights included) and ``torch.cuda.max_memory_allocated`` on CUDA. The time is
over ``--runs`` iterations after ``--warmup`` untimed ones, wall clock and the process's CPU time (user + system,
all threads: far less sensitive than the wall clock to other processes on shared cores); the table is markdown
on stdout.

Usage::

    .venv/bin/python benchmarks/bench_adapt.py                                    # CPU: 256² and 1024²
    .venv/bin/python benchmarks/bench_adapt.py --device cuda --clip-models ViT-B-32,ViT-B-16 --runs 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("sg2-256", "sg2-1024")
MODES = ("auto", "all", "coarse")


def build_generator(name: str):
    import torch

    from clipstyle.generator.stylegan2 import (
        StyleGAN2Config,
        StyleGAN2Generator,
        channels_for,
    )

    torch.manual_seed(0)
    res = int(name.split("-")[1])
    cfg = StyleGAN2Config(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                          channels=channels_for(res, 32768, 512), mapping_layers=8, architecture="skip",
                          conv_clamp=256)
    return StyleGAN2Generator(cfg).eval().requires_grad_(False)


def measure(config: str, mode: str, device: str, clip_models: str, batch: int, warmup: int, runs: int) -> dict:
    """One (config, mode) in this process → its numbers."""
    import resource

    import torch

    from clipstyle.adapt.layers import parse_layers
    from clipstyle.adapt.losses import AdaptLoss, text_critic
    from clipstyle.adapt.trainer import AdaptConfig, adapt_generator
    from clipstyle.guidance import CLIPGuide

    dev = torch.device(device)
    G = build_generator(config).to(dev)
    guides = [CLIPGuide(m, None, device=dev) for m in clip_models.split(",")]
    loss = AdaptLoss([text_critic(g, 1.0, "photo", "pencil sketch", None) for g in guides])
    rows = parse_layers("auto" if mode == "auto" else mode, G.num_ws, G.block_groups())
    stamps: list[float] = []
    cpu: list[float] = []

    def tick(info, images):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())

    cfg = AdaptConfig(steps=warmup + runs, batch=batch, rows=rows, preview_every=0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    result = adapt_generator(G, loss, cfg, callbacks=[tick])
    first = warmup - 1 if warmup else 0
    seconds, cpu_seconds = stamps[-1] - stamps[first], cpu[-1] - cpu[first]
    timed = runs if warmup else runs - 1
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    trained = sorted({len(r) for r in result.rows_trained})
    return {"config": config, "mode": mode, "device": device, "clip_models": clip_models, "batch": batch,
            "it_per_s": timed / seconds, "s_per_it": seconds / timed, "cpu_s_per_it": cpu_seconds / timed, "peak_gb": peak / 1e9,
            "rows_trained": trained, "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--clip-models", default="ViT-B-32")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: CONFIG:MODE in this process
    a = p.parse_args()
    if a.one:
        config, mode = a.one.split(":")
        print(json.dumps(measure(config, mode, a.device, a.clip_models, a.batch, a.warmup, a.runs)))
        return
    rows = []
    for config in a.configs.split(","):
        for mode in a.modes.split(","):
            cmd = [sys.executable, __file__, "--one", f"{config}:{mode}", "--device", a.device, "--clip-models",
                   a.clip_models, "--batch", str(a.batch), "--warmup", str(a.warmup), "--runs", str(a.runs)]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"# {rows[-1]}", file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print("| config | layers | CLIP models | batch | it/s | s/it | CPU s/it | peak memory GB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['mode']} | {r['clip_models']} | {r['batch']} | {r['it_per_s']:.3f} | "
              f"{r['s_per_it']:.2f} | {r['cpu_s_per_it']:.2f} | {r['peak_gb']:.2f} |")


if __name__ == "__main__":
    main()
