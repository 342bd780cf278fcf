"""What ``--log`` costs per optimization step: the text job with no tracker, TensorBoard, MLflow and both.

Random-weight models (nothing is downloaded): a StyleGAN2 of ``--size``² and either the tests' tiny CLIP or
a random ViT-B-32. Every configuration runs ``--repeats`` times, interleaved; a step's time is the gap
between consecutive callbacks (the loop's own clock, ``StepInfo.seconds``), so the first step (warm-up) is
left out. Reported: the mean step (previews included), the overhead against no tracking, the time the
tracker callback itself takes on the loop's thread, and what finishing costs after the loop (the last writes,
MLflow's artifacts). Results: docs/tracking.md.

    PYTHONPATH=. python benchmarks/bench_logging.py --size 32 --max-channels 32 --steps 100
    PYTHONPATH=. python benchmarks/bench_logging.py --size 128 --max-channels 64 --steps 30 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TINY_CLIP = str(ROOT / "tests" / "data" / "tiny_clip.json")


def build(size: int, clip: str, device: str, max_channels: int = 32):
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    from clipstyle.guidance import CLIPGuide

    torch.manual_seed(0)
    levels = size.bit_length() - 2  # 4², 8², …, size²
    channels = tuple(min(max_channels, 2 ** (14 - i)) for i in range(levels))
    dim = min(512, max_channels)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=dim, w_dim=dim,
                                           c_dim=0, img_resolution=size, img_channels=3, channels=channels))
    G = G.to(device).eval().requires_grad_(False)
    guide = CLIPGuide(TINY_CLIP if clip == "tiny" else clip, None, device=device)
    return G, guide


class Timer:
    """Wraps a callback: the time it takes on the loop's thread, and the step gaps."""

    def __init__(self, inner=None):
        self.inner, self.cost, self.stamps, self.cpu = inner, [], [], []

    def __call__(self, info, images):
        self.stamps.append(info.seconds)
        self.cpu.append(time.process_time())  # every thread of the process: the trackers' work included
        if self.inner is not None:
            t = time.perf_counter()
            self.inner(info, images)
            self.cost.append(time.perf_counter() - t)


def one(G, guide, log_kind: str, steps: int, save_every: int, tmp: Path) -> dict:
    from clipstyle import text_to_image
    from clipstyle.tracking import open_trackers

    specs = {"none": [], "tensorboard": [f"tensorboard:{tmp / 'tb'}"], "mlflow": [f"mlflow:{(tmp / 'ml').as_uri()}"],
             "both": [f"tensorboard:{tmp / 'tb'}", f"mlflow:{(tmp / 'ml').as_uri()}"]}[log_kind]
    trackers = open_trackers(specs, "bench", preview_every=save_every)
    timer = Timer(trackers.callback if trackers else None)
    run = text_to_image("a portrait of a bearded man", G=G, guide=guide, steps=steps, seed=1, cutouts=8,
                        save_every=save_every, callback=timer)
    t = time.perf_counter()
    folder = run.save(tmp / "out")
    trackers.finish(run, folder)
    finish = time.perf_counter() - t
    gaps = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]
    cpu = (timer.cpu[-1] - timer.cpu[0]) / (len(timer.cpu) - 1)
    return {"step": statistics.fmean(gaps), "cpu": cpu, "cost": statistics.fmean(timer.cost) if timer.cost else 0.0,
            "cost_max": max(timer.cost) if timer.cost else 0.0, "finish": finish}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--clip", default="tiny", help="'tiny' (tests/data/tiny_clip.json) or an open_clip model name")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--save-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-channels", type=int, default=32, help="channel cap of the generator (512 = FFHQ's)")
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    G, guide = build(args.size, args.clip, args.device, args.max_channels)
    kinds = ("none", "tensorboard", "mlflow", "both")
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        one(G, guide, "both", min(args.steps, 12), args.save_every, Path(tmp) / "warm")  # imports, caches
        for r in range(args.repeats):
            for kind in kinds:
                results[kind].append(one(G, guide, kind, args.steps, args.save_every, Path(tmp) / f"{kind}{r}"))
                print(f"repeat {r} {kind}: {results[kind][-1]}", file=sys.stderr, flush=True)
    base = statistics.median(x["step"] for x in results["none"])
    base_cpu = statistics.median(x["cpu"] for x in results["none"])
    print(f"{args.size}² StyleGAN2 (≤ {args.max_channels} channels), CLIP {args.clip}, {args.device}, "
          f"{args.steps} steps, previews every "
          f"{args.save_every}, {args.repeats} repeats, {torch.get_num_threads()} threads")
    print("| --log | step (ms) | overhead | CPU per step, all threads (ms) | CPU overhead | callback on the loop's "
          "thread (mean / max ms) | finish (s) |")
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        step = statistics.median(x["step"] for x in results[kind])
        cost = statistics.median(x["cost"] for x in results[kind]) * 1e3
        cmax = max(x["cost_max"] for x in results[kind]) * 1e3
        fin = statistics.median(x["finish"] for x in results[kind])
        cpu = statistics.median(x["cpu"] for x in results[kind])
        print(f"| {kind} | {step * 1e3:.1f} | {100 * (step / base - 1):+.1f}% | {cpu * 1e3:.1f} | "
              f"{100 * (cpu / base_cpu - 1):+.1f}% | {cost:.3f} / {cmax:.2f} | {fin:.2f} |")


if __name__ == "__main__":
    main()
