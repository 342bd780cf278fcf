"""Time the real-photo path at the FFHQ configuration (random weights, batch 1, float32), on the current device.

Stages (each the library call the CLI makes, with its default settings except the step counts):

* ``encode`` — the e4e encoder (IR-SE50 64/128/256/512, SE width/16, 18 map2style heads 512 wide) on one 256²
  image: one forward pass (``Encoder.__call__``);
* ``project`` — one step of the W projector at 1024² with LPIPS (random VGG16 weights; images pooled to 256²)
  and the noise regularizer (:func:`clipstyle.inversion.project.project`), from its own time per step;
* ``tune`` — one step of pivotal tuning at 1024² (LPIPS + L2 on the pivot, the locality regularizer on one
  random latent, Adam on all synthesis weights: :func:`clipstyle.inversion.pti.tune`);
* ``edit`` — one step of the edit at 1024² with a random-weight CLIP ViT-B-32, 8 cutouts (the CPU default) and
  the ArcFace identity loss (IR-SE50, 512-d embedding; :func:`clipstyle.inversion.edit.edit`).

Per-step times are the median over ``--steps`` timed steps after one warm-up step; the table also gives the
time of a whole stage at the CLI's default step counts (project 1000, tune 350, edit 100).

Usage::

    PYTHONPATH=. python benchmarks/bench_photo.py                   # 1024², ~10 min on 2 CPU cores
    PYTHONPATH=. python benchmarks/bench_photo.py --resolution 256 --steps 3
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch


def ffhq_generator(res: int):
    from clipstyle.generator.stylegan2 import (
        StyleGAN2Config,
        StyleGAN2Generator,
        channels_for,
    )

    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                                           channels=channels_for(res), conv_clamp=256))
    return G.eval().requires_grad_(False)


def irse(widths=(64, 128, 256, 512), embedding=None):
    from clipstyle.encoders.irse import STAGE_UNITS, IRSEBackbone, IRSEConfig

    units, prev, k = [], widths[0], 0
    for s, n in enumerate(STAGE_UNITS[24]):
        for j in range(n):
            units.append((prev, widths[s], 2 if j == 0 else 1, widths[s] // 16))
            prev = widths[s]
            k += 1
    return IRSEBackbone(IRSEConfig(widths[0], tuple(units), STAGE_UNITS[24], embedding,
                                   None if embedding is None else widths[-1] * 49)).eval().requires_grad_(False)


def ffhq_encoder(num_ws: int):
    from clipstyle.encoders.e4e import Encoder, StyleHead

    torch.manual_seed(1)
    heads = [StyleHead(512, 512, 4 if i < 3 else 5 if i < 7 else 6, 512) for i in range(num_ws)]
    return Encoder(irse(), heads, torch.nn.Conv2d(256, 512, 1), torch.nn.Conv2d(128, 512, 1),
                   torch.zeros(num_ws, 512), "e4e").eval().requires_grad_(False)


def random_lpips():
    from clipstyle.inversion.lpips import CHANNELS, LPIPS, build_vgg16_features

    torch.manual_seed(2)
    return LPIPS(build_vgg16_features().state_dict(), {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1)
                                                      for i, c in enumerate(CHANNELS)})


def per_step(history_seconds: list[float]) -> float:
    """Median step time from cumulative StepInfo.seconds, skipping the warm-up step."""
    deltas = [b - a for a, b in zip(history_seconds, history_seconds[1:])]
    return statistics.median(deltas) if deltas else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per stage (after one warm-up)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = a.device
    from clipstyle.encoders.arcface import FaceIdentity, IdentityLoss
    from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts
    from clipstyle.inversion.edit import EditConfig, edit
    from clipstyle.inversion.project import ProjectConfig, project
    from clipstyle.inversion.pti import TuneConfig, tune

    G = ffhq_generator(a.resolution).to(dev)
    res: dict[str, float] = {}
    enc = ffhq_encoder(G.num_ws).to(dev)
    x256 = torch.rand(1, 3, 256, 256, device=dev) * 2 - 1
    with torch.no_grad():
        enc(x256)
        times = []
        for _ in range(a.steps):
            t = time.perf_counter()
            enc(x256)
            times.append(time.perf_counter() - t)
    res["encode"] = statistics.median(times)

    target = (torch.rand(1, 3, a.resolution, a.resolution, device=dev) * 2 - 1)
    lp = random_lpips().to(dev)
    seconds: list[float] = []
    n = a.steps + 1
    proj = project(G, target, ProjectConfig(steps=n, w_avg_samples=1000), perceptual=lp,
                   callbacks=[lambda info, img: seconds.append(info.seconds)])
    res["project_step"] = per_step(seconds)

    seconds = []
    tune(G, proj.ws, target, TuneConfig(steps=n), noise=proj.noise, perceptual=lp,
         callbacks=[lambda info, img: seconds.append(info.seconds)])
    res["tune_step"] = per_step(seconds)

    guide = CLIPGuide("ViT-B-32", None, device=dev)
    cut = Cutouts(CutoutConfig(num_cutouts=8), guide.input_size)
    torch.manual_seed(3)
    face = FaceIdentity(irse(embedding=512)).to(dev)
    seconds = []
    edit(G, proj.ws, "a smiling face", guide, cut, EditConfig(steps=n), noise=proj.noise,
         extra_terms=[(IdentityLoss(face, target), 0.1)], callbacks=[lambda info, img: seconds.append(info.seconds)])
    res["edit_step"] = per_step(seconds)
    res["project_1000"] = res["project_step"] * 1000
    res["tune_350"] = res["tune_step"] * 350
    res["edit_100"] = res["edit_step"] * 100
    info = {"device": dev, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "resolution": a.resolution, "steps": a.steps}
    if a.json:
        print(json.dumps({"info": info, "seconds": res}, indent=1))
        return
    print(f"{info}\n")
    print("| stage | per call / step | at the CLI's default steps |")
    print("|---|---:|---:|")
    print(f"| encode (e4e, 256² in) | {res['encode']:.3f} s | {res['encode']:.3f} s (one pass) |")
    for name, total, k in (("project", "project_1000", 1000), ("tune", "tune_350", 350), ("edit", "edit_100", 100)):
        step = res[f"{name}_step"]
        tot = res[total]
        print(f"| {name} ({a.resolution}²) | {step:.2f} s | {tot / 60:.1f} min ({k} steps) |"
              if math.isfinite(step) else f"| {name} | n/a | n/a |")


if __name__ == "__main__":
    main()
